"""Shared fixtures: real PostgreSQL servers and a fresh database per test.

Tests run against the embedded warehouse (always available: it comes with the
requirements) and, where a test asks for ``any_warehouse``, also against the
PostgreSQL server on 127.0.0.1:5432 when one answers (CI has one).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "tests"))

FIXTURES = ROOT / "tests" / "fixtures"
SYSTEM_SERVER = os.environ.get("REACTIVATION_TEST_SYSTEM_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """Settings are cached per process; each test reads the environment it set up."""
    from reactivation.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def state_tmp() -> Iterator[Path]:
    """A scratch folder inside the project's .state/ for files the embedded server's own user must reach.

    pytest's tmp_path lives under a 0700 folder that pytest re-tightens whenever a
    pytest process starts, which would lock the server's user out mid-test.
    """
    import shutil

    path = ROOT / ".state" / "tmp" / uuid.uuid4().hex[:12]
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def embedded_server() -> Iterator[str]:
    """Admin URL of an embedded PostgreSQL of this test session's own (initdb takes about a second).

    Each pytest process gets its own server, so parallel test runs never stop each other's.
    """
    import shutil

    from reactivation.embedded_warehouse import EmbeddedWarehouse

    root = ROOT / ".state" / "test-warehouses" / f"session-{os.getpid()}"
    server = EmbeddedWarehouse(root)
    server.start()
    yield server.admin_url()
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def _system_server_available() -> bool:
    try:
        with psycopg.connect(SYSTEM_SERVER, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def _fresh_database(admin_url: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def warehouse(embedded_server: str) -> Iterator[str]:
    """URL of a fresh, empty database on the embedded server."""
    yield from _fresh_database(embedded_server)


@pytest.fixture(params=["embedded", "system"])
def any_warehouse(request, embedded_server: str) -> Iterator[str]:
    """A fresh database on the embedded server, then on the system server (127.0.0.1:5432) if it answers."""
    if request.param == "system":
        if not _system_server_available():
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        yield from _fresh_database(SYSTEM_SERVER)
    else:
        yield from _fresh_database(embedded_server)
