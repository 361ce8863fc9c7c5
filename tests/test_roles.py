"""Warehouse roles: least privilege per job, and location-scoped reporting through forced row-level security.

Each test logs in as real (non-superuser) users that are members of the roles
``reactivation.roles`` creates, on the embedded server and on the system server
when it answers, and checks what they can and cannot read. Superusers bypass
row-level security, so the table-owner case uses a non-superuser owner.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from reactivation.quality.store import ensure_quality_schema
from reactivation.roles import (
    GROUP_ROLES,
    LOADER,
    REPORTER,
    SENDER,
    TRANSFORMER,
    apply_row_security,
    ensure_roles,
    scoped_role_name,
)
from reactivation.warehouse import ensure_schema

DENIED = psycopg.errors.InsufficientPrivilege


def _as(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}@{host}{port}", parts.path, parts.query, ""))


@pytest.fixture
def login(any_warehouse: str) -> Iterator[Callable[..., str]]:
    """``login(*roles)``: a new LOGIN user (not a superuser) in those roles; dropped after the test."""
    created: list[str] = []
    tag = uuid.uuid4().hex[:8]

    def make(*roles: str, name: str | None = None) -> str:
        user = name or f"rt_{tag}_{len(created)}"
        with psycopg.connect(any_warehouse, autocommit=True) as conn:
            conn.execute(sql.SQL("create role {} login nosuperuser nocreaterole").format(sql.Identifier(user)))
            created.append(user)
            for role in roles:
                conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(user)))
        return user

    make.tag = tag  # type: ignore[attr-defined]
    make.created = created  # type: ignore[attr-defined]
    yield make
    with psycopg.connect(any_warehouse, autocommit=True) as conn:
        for user in reversed(created):
            # Roles are cluster-wide: drop what they own or were granted in this database, then the role.
            with contextlib.suppress(psycopg.errors.UndefinedObject):
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(user)))
                conn.execute(sql.SQL("drop role {}").format(sql.Identifier(user)))


def _reporting_tables(url: str) -> None:
    """Tiny stand-ins for the reporting marts: one with a location_id, one without; plus a non-reporting mart."""
    ensure_schema(url)
    ensure_quality_schema(url)
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute(
            """create table marts.rpt_reactivation_funnel (week_start date, location_id text, rule_id text,
               eligible integer, contacted integer)"""
        )
        conn.execute(
            """insert into marts.rpt_reactivation_funnel values
               ('2023-10-30', 'loc_a', 'r1', 10, 4), ('2023-10-30', 'loc_a', 'r2', 5, 2),
               ('2023-10-23', 'loc_a', 'r1', 8, 3), ('2023-10-30', 'loc_b', 'r1', 7, 1),
               ('2023-10-23', 'loc_b', 'r2', 6, 2)"""
        )
        conn.execute("create table marts.rpt_holdout_lift (rule_id text, absolute_lift numeric)")
        conn.execute("insert into marts.rpt_holdout_lift values ('r1', 0.05)")
        conn.execute("create table marts.outreach_candidates (person_id text, location_id text)")
        conn.execute("insert into marts.outreach_candidates values ('p1', 'loc_a')")
        conn.execute(
            "insert into ops.quality_results (dag_run_id, as_of, suite, expectation, severity, success)"
            " values ('run', '2023-10-31', 'raw', 'rows', 'critical', true)"
        )


def _locations_seen(url: str, table: str = "rpt_reactivation_funnel") -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("select location_id, count(*) from {} group by 1 order by 1").format(sql.Identifier("marts", table))
        ).fetchall()
    return dict(rows)


def _denied(url: str, statement: str) -> bool:
    with psycopg.connect(url) as conn:
        try:
            conn.execute(statement)
        except DENIED:
            return True
    return False


def test_location_scoped_reporter_reads_only_its_locations(any_warehouse: str, login) -> None:
    url = any_warehouse
    _reporting_tables(url)
    result = ensure_roles(url)
    assert result["scoped_roles"][scoped_role_name("loc_a")] == ["loc_a"]
    assert result["secured_tables"] == ["rpt_reactivation_funnel"]

    scoped = _as(url, login(scoped_role_name("loc_a")))
    everyone = _as(url, login(REPORTER))
    assert _locations_seen(scoped) == {"loc_a": 3}
    with psycopg.connect(scoped) as conn:
        other = conn.execute("select count(*) from marts.rpt_reactivation_funnel where location_id = 'loc_b'")
        assert other.fetchone()[0] == 0
    assert _locations_seen(everyone) == {"loc_a": 3, "loc_b": 2}

    # A scoped reporter reads only location-bearing reporting marts; nothing else, raw least of all.
    for statement in (
        "select * from marts.rpt_holdout_lift",
        "select * from marts.outreach_candidates",
        "select * from raw.patients",
        "select * from ops.quality_results",
        "select * from ops.reporter_locations",
    ):
        assert _denied(scoped, statement), statement
    # The unscoped reporter: every reporting mart and the quality results; still no raw, no outreach tables.
    with psycopg.connect(everyone) as conn:
        assert conn.execute("select count(*) from marts.rpt_holdout_lift").fetchone()[0] == 1
        assert conn.execute("select count(*) from ops.quality_results").fetchone()[0] == 1
    for statement in (
        "select * from raw.patients",
        "select * from ops.outbox",
        "select * from marts.outreach_candidates",
    ):
        assert _denied(everyone, statement), statement

    with psycopg.connect(url) as conn:
        flags = dict(
            conn.execute(
                """select relname, (relrowsecurity and relforcerowsecurity) from pg_class
                   where relname in ('rpt_reactivation_funnel', 'rpt_holdout_lift')
                   and relnamespace = 'marts'::regnamespace"""
            ).fetchall()
        )
    assert flags == {"rpt_reactivation_funnel": True, "rpt_holdout_lift": False}


def test_a_dbt_rebuild_fails_closed_until_security_is_reapplied(any_warehouse: str, login) -> None:
    url = any_warehouse
    _reporting_tables(url)
    ensure_roles(url)
    scoped = _as(url, login(scoped_role_name("loc_a")))
    # What dbt does to a table model: a new table replaces the old one, without its grants and policies.
    with psycopg.connect(url) as conn:
        conn.execute("create table marts.rpt_new as select * from marts.rpt_reactivation_funnel")
        conn.execute("drop table marts.rpt_reactivation_funnel")
        conn.execute("alter table marts.rpt_new rename to rpt_reactivation_funnel")
    assert _denied(scoped, "select * from marts.rpt_reactivation_funnel"), "no grant: refused, not leaked"
    first = apply_row_security(url)
    second = apply_row_security(url)  # idempotent
    assert first["secured_tables"] == second["secured_tables"] == ["rpt_reactivation_funnel"]
    assert _locations_seen(scoped) == {"loc_a": 3}
    ensure_roles(url)  # and so is the whole set-up
    assert _locations_seen(scoped) == {"loc_a": 3}
    with psycopg.connect(url) as conn:
        policies = conn.execute(
            "select count(*) from pg_policies where schemaname = 'marts' and tablename = 'rpt_reactivation_funnel'"
        ).fetchone()[0]
    assert policies == 1


def test_forced_row_security_limits_a_non_superuser_table_owner(any_warehouse: str, login) -> None:
    url = any_warehouse
    ensure_schema(url)
    owner = login()
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute(sql.SQL("grant usage, create on schema marts to {}").format(sql.Identifier(owner)))
    owner_url = _as(url, owner)
    with psycopg.connect(owner_url) as conn:
        conn.execute("create table marts.rpt_owned (location_id text, bookings integer)")
        conn.execute(
            "insert into marts.rpt_owned values ('loc_a', 1), ('loc_a', 2), ('loc_b', 3), ('loc_b', 4), ('loc_b', 5)"
        )
        assert not conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()[0]

    ensure_roles(url, location_scopes={owner: ["loc_a"]})
    assert _locations_seen(owner_url, "rpt_owned") == {"loc_a": 2}
    with psycopg.connect(owner_url) as conn:
        assert conn.execute("select count(*) from marts.rpt_owned where location_id = 'loc_b'").fetchone()[0] == 0
        with pytest.raises(DENIED):  # the policy's check applies to what the owner writes, too
            conn.execute("insert into marts.rpt_owned values ('loc_b', 6)")

    # It is FORCE that limits the owner: without it the owner reads everything again.
    with psycopg.connect(url) as conn:
        conn.execute("alter table marts.rpt_owned no force row level security")
    assert _locations_seen(owner_url, "rpt_owned") == {"loc_a": 2, "loc_b": 3}
    apply_row_security(url)
    assert _locations_seen(owner_url, "rpt_owned") == {"loc_a": 2}


def test_an_owner_without_a_scope_keeps_reading_its_own_tables(any_warehouse: str, login) -> None:
    """The pipeline's own user (dbt, the report) is a table owner: unless scoped, it sees every location."""
    url = any_warehouse
    ensure_schema(url)
    owner = login()
    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute(sql.SQL("grant usage, create on schema marts to {}").format(sql.Identifier(owner)))
    owner_url = _as(url, owner)
    with psycopg.connect(owner_url) as conn:
        conn.execute("create table marts.rpt_pipeline (location_id text)")
        conn.execute("insert into marts.rpt_pipeline values ('loc_a'), ('loc_b')")
    result = ensure_roles(url)
    assert result["secured_tables"] == ["rpt_pipeline"]
    assert _locations_seen(owner_url, "rpt_pipeline") == {"loc_a": 1, "loc_b": 1}
    assert _locations_seen(_as(url, login(scoped_role_name("loc_b"))), "rpt_pipeline") == {"loc_b": 1}


def test_group_roles_have_least_privilege(any_warehouse: str, login) -> None:
    url = any_warehouse
    _reporting_tables(url)
    ensure_roles(url)
    with psycopg.connect(url) as conn:
        can_login = dict(
            conn.execute("select rolname, rolcanlogin from pg_roles where rolname = any(%s)", (list(GROUP_ROLES),))
        )
    assert can_login == dict.fromkeys(GROUP_ROLES, False)

    sender = _as(url, login(SENDER))
    for statement in (
        "select * from raw.patients",
        "select * from raw.load_manifest",
        "select * from marts.rpt_reactivation_funnel",
        "update ops.provider_events set event_type = ''",
    ):
        assert _denied(sender, statement), statement
    with psycopg.connect(sender) as conn:
        conn.execute("select count(*) from marts.outreach_candidates")
        conn.execute("select count(*) from ops.outbox")
        conn.execute(
            "insert into ops.opt_outs (person_id, channel, status, source) values ('p1', 'sms', 'opt_out', 't')"
        )
        conn.rollback()

    loader = _as(url, login(LOADER))
    for statement in (
        "select * from marts.outreach_candidates",
        "select * from ops.outbox",
        "select * from ops.opt_outs",
    ):
        assert _denied(loader, statement), statement
    with psycopg.connect(loader) as conn:
        conn.execute("select count(*) from raw.patients")
        conn.execute(
            """insert into raw.load_manifest (source_system, location_id, entity, file_name, file_size, sha256, status)
               values ('csv', 'loc_a', 'patients', 'p.csv', 1, 'x', 'loading')"""
        )
        conn.execute("insert into ops.stage_results values ('run', '2023-10-31', 'ingest', 'success', '{}')")
        conn.rollback()

    transformer = _as(url, login(TRANSFORMER))
    with psycopg.connect(transformer) as conn:
        conn.execute("select count(*) from raw.patients")
        conn.execute("select count(*) from ops.opt_outs")  # a dbt source
        conn.execute("create table marts.t_probe (x integer)")
        conn.rollback()
    assert _denied(transformer, "select * from ops.staff_queue"), "reply texts are not a dbt source"
    assert _denied(transformer, "insert into raw.patients (load_id, source_line, source_system, location_id_loaded)"
                                " values (1, 1, 'x', 'y')")  # fmt: skip

    reporter = _as(url, login(REPORTER))
    for statement in ("select * from raw.patients", "select * from ops.outbox", "select * from ops.opt_outs"):
        assert _denied(reporter, statement), statement


def with_subcommand(monkeypatch: pytest.MonkeyPatch, name: str, add_subcommand) -> None:
    """Until the CLI registers ``name`` itself, register it the way cli.build_parser will (a no-op after)."""
    from reactivation import cli

    original = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = original()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if name not in sub.choices:
            add_subcommand(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def test_roles_command(any_warehouse: str, login, monkeypatch: pytest.MonkeyPatch) -> None:
    from reactivation import roles
    from reactivation.cli import main

    with_subcommand(monkeypatch, "roles", roles.add_subcommand)
    _reporting_tables(any_warehouse)
    regional = f"rt_{login.tag}_regional"
    login.created.append(regional)  # created by the command; dropped with the test's users
    monkeypatch.setenv("WAREHOUSE_URL", any_warehouse)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["roles", "apply", "--location-scope", f"{regional}=loc_a,loc_b"]) == 0
    assert '"secured_tables"' in out.getvalue()
    member = _as(any_warehouse, login(regional))
    assert _locations_seen(member) == {"loc_a": 3, "loc_b": 2}
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["roles", "apply", "--location-scope", f"{regional}=loc_b"]) == 0
    assert _locations_seen(member) == {"loc_b": 2}, "a new scope replaces the old one"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["roles", "apply", "--location-scope", f"{REPORTER}=loc_a"]) == 2
    assert "group role" in err.getvalue()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["roles", "secure"]) == 0
