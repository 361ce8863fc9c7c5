"""Where the gate writes what it found and what it decided, in the warehouse's ``ops`` schema.

``ops.quality_results``: one row per expectation per run (``location_id`` null), plus
one row per failing location for location-scoped expectations, for trend reports.
``ops.gate_decisions``: one ``global`` row and one row per known location per run,
with ``blocked`` and the reasons in plain words; outreach planning reads it (through
``reactivation.quality.gate.blocked_scope``) to block batches.

Both are written in one transaction per run and replaced on a re-run of the same
run id, so the gate is idempotent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import psycopg

from reactivation.warehouse import connect

QUALITY_DDL = [
    "create schema if not exists ops",
    """create table if not exists ops.quality_results (
    dag_run_id text not null,
    as_of date not null,
    suite text not null,
    expectation text not null,
    severity text not null check (severity in ('critical', 'warning')),
    success boolean not null,
    observed_value numeric,
    location_id text,
    recorded_at timestamptz not null default now()
)""",
    "create index if not exists quality_results_run_idx on ops.quality_results (dag_run_id)",
    "create index if not exists quality_results_trend_idx on ops.quality_results (suite, expectation, as_of)",
    """create table if not exists ops.gate_decisions (
    dag_run_id text not null,
    as_of date not null,
    scope text not null check (scope in ('global', 'location')),
    location_id text,
    blocked boolean not null,
    reasons text[] not null default '{}',
    warnings text[] not null default '{}',
    decided_at timestamptz not null default now(),
    constraint gate_decisions_scope_has_location check ((scope = 'global') = (location_id is null))
)""",
    """create unique index if not exists gate_decisions_one_per_scope
    on ops.gate_decisions (dag_run_id, coalesce(location_id, ''))""",
]


@dataclass(frozen=True)
class ResultRow:
    suite: str
    expectation: str
    severity: str
    success: bool
    observed_value: float | int | Decimal | None
    location_id: str | None = None


@dataclass(frozen=True)
class DecisionRow:
    location_id: str | None  # None: the global row
    blocked: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()


def ensure_quality_schema(url: str) -> None:
    """Create the gate's two tables if missing (idempotent, safe under concurrent runs)."""
    with connect(url) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.quality.ensure_schema'))")
        for statement in QUALITY_DDL:
            conn.execute(statement)


def save_run(
    url: str,
    *,
    dag_run_id: str,
    as_of: date,
    results: Iterable[ResultRow],
    decisions: Iterable[DecisionRow],
) -> None:
    """Replace this run's results and decisions in one transaction."""
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("delete from ops.quality_results where dag_run_id = %s", (dag_run_id,))
        cur.execute("delete from ops.gate_decisions where dag_run_id = %s", (dag_run_id,))
        cur.executemany(
            """insert into ops.quality_results
               (dag_run_id, as_of, suite, expectation, severity, success, observed_value, location_id)
               values (%s, %s, %s, %s, %s, %s, %s, %s)""",
            [
                (dag_run_id, as_of, r.suite, r.expectation, r.severity, r.success, r.observed_value, r.location_id)
                for r in results
            ],
        )
        cur.executemany(
            """insert into ops.gate_decisions (dag_run_id, as_of, scope, location_id, blocked, reasons, warnings)
               values (%s, %s, %s, %s, %s, %s, %s)""",
            [
                (
                    dag_run_id,
                    as_of,
                    "global" if d.location_id is None else "location",
                    d.location_id,
                    d.blocked,
                    list(d.reasons),
                    list(d.warnings),
                )
                for d in decisions
            ],
        )


def volume_history(url: str, *, suite: str, expectation: str, before: date, runs: int = 5) -> list[float]:
    """Observed row counts of the last ``runs`` previous successful runs (one per as-of date, newest first).

    A run is successful when its gate did not block globally; a re-run of a date counts once (its latest).
    """
    with connect(url) as conn:
        rows = conn.execute(
            """
            select observed_value from (
                select distinct on (results.as_of) results.as_of, results.observed_value
                from ops.quality_results as results
                inner join ops.gate_decisions as decisions
                    on decisions.dag_run_id = results.dag_run_id and decisions.scope = 'global'
                where
                    results.suite = %s
                    and results.expectation = %s
                    and results.location_id is null
                    and results.observed_value is not null
                    and results.as_of < %s
                    and not decisions.blocked
                order by results.as_of desc, results.recorded_at desc
            ) as per_date
            order by as_of desc
            limit %s
            """,
            (suite, expectation, before, runs),
        ).fetchall()
    return [float(value) for (value,) in rows]


def known_locations(url: str) -> list[str]:
    """Every location that has delivered an extract, plus any the outreach candidates name."""
    with connect(url) as conn:
        locations = {
            row[0] for row in conn.execute("select distinct location_id from raw.load_manifest where status = 'loaded'")
        }
        if conn.execute("select to_regclass('marts.outreach_candidates')").fetchone()[0] is not None:
            # A malformed mart is the checks' business, not this lookup's.
            with contextlib.suppress(psycopg.Error), conn.transaction():
                rows = conn.execute(
                    "select distinct location_id from marts.outreach_candidates where location_id is not null"
                ).fetchall()
                locations.update(row[0] for row in rows)
    return sorted(locations)
