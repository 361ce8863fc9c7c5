"""The embedded warehouse: starts on a bare machine, keeps its data, stops cleanly."""

from __future__ import annotations

import psycopg

from reactivation.embedded_warehouse import EmbeddedWarehouse


def test_start_stop_restart_keeps_data(state_tmp) -> None:
    server = EmbeddedWarehouse(state_tmp / "warehouse")
    url = server.start()
    try:
        assert server.is_running()
        with psycopg.connect(url) as conn:
            conn.execute("create table kept (n int)")
            conn.execute("insert into kept values (42)")
        assert server.start() == url  # already running: same server, no second instance
        server.stop()
        assert not server.is_running()
        assert not (server.pgdata / "postmaster.pid").exists(), "fast shutdown leaves no pid file"
        url_again = server.start()
        with psycopg.connect(url_again) as conn:
            assert conn.execute("select n from kept").fetchone() == (42,)
        assert url_again == url, "the port is remembered across restarts"
    finally:
        server.stop()
    server.stop()  # stopping a stopped server is fine


def test_listens_on_loopback_only(state_tmp) -> None:
    server = EmbeddedWarehouse(state_tmp / "warehouse")
    server.start()
    try:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("show log_statement").fetchone() == ("none",)
    finally:
        server.stop()


def test_a_table_created_and_filled_in_one_transaction_writes_no_wal(state_tmp) -> None:
    """How dbt builds every table model: the rows go to the table, not also to the WAL."""
    server = EmbeddedWarehouse(state_tmp / "warehouse")
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            assert conn.execute("show wal_level").fetchone() == ("minimal",)
            before = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
            with conn.transaction():
                conn.execute(
                    "create table built as select g as id, repeat('x', 100) as pad from generate_series(1, 200000) g"
                )
            after = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
            wal_bytes = conn.execute("select pg_wal_lsn_diff(%s, %s)", (after, before)).fetchone()[0]
            table_bytes = conn.execute("select pg_relation_size('built')").fetchone()[0]
            assert wal_bytes < table_bytes / 10, (wal_bytes, table_bytes)
    finally:
        server.stop()
