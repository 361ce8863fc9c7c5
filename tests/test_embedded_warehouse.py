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
