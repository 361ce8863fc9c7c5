"""Warehouse access: connections, the embedded fallback, and the schema the pipeline owns.

The raw layer is generated from the extract contract (``ingest.contract``); the
``ops`` schema holds what the pipeline records about its own runs. dbt owns
everything downstream of raw.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import psycopg

from reactivation.ingest.contract import ENTITIES
from reactivation.settings import Settings, get_settings, redact_url

log = logging.getLogger(__name__)


class WarehouseUnavailable(RuntimeError):
    """The warehouse could not be reached; the message names the (redacted) URL."""


def connect(url: str, **kwargs) -> psycopg.Connection:
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise WarehouseUnavailable(f"cannot connect to the warehouse at {redact_url(url)}: {reason}") from None


@contextlib.contextmanager
def warehouse_url(settings: Settings | None = None, *, stop_embedded: bool = True) -> Iterator[str]:
    """Yield the warehouse URL, starting the embedded server when none is configured.

    The embedded server is stopped on exit only if this call started it, so a
    server the operator started by hand (``reactivation warehouse start``) stays up.
    """
    settings = settings or get_settings()
    configured = settings.resolved_warehouse_url()
    if configured:
        yield configured
        return
    from reactivation.embedded_warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(settings.embedded_warehouse_dir)
    was_running = server.is_running()
    url = server.start()
    if not was_running:
        log.info("started embedded warehouse on 127.0.0.1:%s", server.port)
    try:
        yield url
    finally:
        if stop_embedded and not was_running:
            server.stop()
            log.info("stopped embedded warehouse")


def _raw_table_ddl() -> list[str]:
    statements = []
    for entity in ENTITIES.values():
        cols = ",\n    ".join(f"{c.name} {c.sql_type}" for c in entity.table_columns)
        statements.append(
            f"""create table if not exists raw.{entity.name} (
    load_id bigint not null references raw.load_manifest (load_id),
    source_line bigint not null,
    source_system text not null,
    location_id_loaded text not null,
    {cols},
    extra jsonb
)"""
        )
        for c in entity.table_columns:
            statements.append(f"alter table raw.{entity.name} add column if not exists {c.name} {c.sql_type}")
        # Loads append in load_id order, so a block-range index finds a load's rows (staging's watermark, the
        # duplicate pass) at a fraction of a b-tree's cost per row copied in.
        statements.append(f"drop index if exists raw.{entity.name}_load_idx")
        statements.append(
            f"create index if not exists {entity.name}_load_brin on raw.{entity.name} using brin (load_id)"
        )
    return statements


SCHEMA_DDL = [
    "create schema if not exists raw",
    "create schema if not exists ops",
    """create table if not exists raw.load_manifest (
    load_id bigserial primary key,
    source_system text not null,
    location_id text not null,
    entity text not null,
    file_name text not null,
    file_size bigint not null,
    sha256 text not null,
    extract_date date,
    encoding text,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_quarantined bigint not null default 0,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    status text not null check (status in ('loading', 'loaded', 'superseded', 'rejected')),
    message text,
    warnings jsonb not null default '[]'::jsonb,
    superseded_by bigint references raw.load_manifest (load_id),
    constraint rows_balance check (status <> 'loaded' or rows_read = rows_loaded + rows_quarantined)
)""",
    """create unique index if not exists load_manifest_one_good_copy
    on raw.load_manifest (source_system, location_id, entity, sha256)
    where status in ('loaded', 'superseded')""",
    """create table if not exists raw.quarantine (
    load_id bigint not null references raw.load_manifest (load_id),
    source_line bigint not null,
    column_name text,
    reason text not null,
    record text
)""",
    "create index if not exists quarantine_load_idx on raw.quarantine (load_id)",
    # Every touch the outreach engine made (or tried): attempt caps and rest periods read it.
    """create table if not exists ops.outreach_touches (
    outreach_key text primary key,
    person_id text not null,
    household_id text,
    rule_id text not null,
    channel text not null,
    touched_at timestamptz not null,
    status text not null
)""",
    "create index if not exists outreach_touches_person_idx on ops.outreach_touches (person_id, touched_at)",
    # Outreach episodes: one per person per care gap, advanced by each nightly run.
    """create table if not exists ops.episodes (
    episode_id text primary key,
    person_id text not null,
    household_id text,
    rule_id text not null,
    location_id text,
    cadence_id text not null,
    started_on date not null,
    status text not null check (status in ('active', 'ended')),
    touches_planned integer not null default 0,
    last_touch_on date,
    ended_on date,
    end_reason text check (end_reason in ('booked', 'declined', 'not_now', 'opted_out', 'gap_closed',
        'cadence_finished', 'unreachable', 'closed_without_response'))
)""",
    """create unique index if not exists episodes_one_active
    on ops.episodes (person_id, rule_id) where status = 'active'""",
    # Batches per location and channel, reviewed and approved before anything is sent.
    """create table if not exists ops.batches (
    batch_id text primary key,
    dag_run_id text not null,
    as_of date not null,
    location_id text not null,
    channel text not null,
    status text not null check (status in ('awaiting_approval', 'approved', 'rejected', 'expired', 'blocked',
        'sending', 'sent')),
    items integer not null,
    manifest jsonb not null,
    decided_by text,
    decided_at timestamptz,
    decision_note text,
    blocked_reasons jsonb not null default '[]'::jsonb,
    created_at timestamptz not null default now()
)""",
    # The outbox: written before any provider call; one row per outreach key, ever.
    """create table if not exists ops.outbox (
    outreach_key text primary key,
    batch_id text not null references ops.batches (batch_id),
    episode_id text not null references ops.episodes (episode_id),
    touch_number integer not null,
    person_id text not null,
    household_id text,
    rule_id text not null,
    location_id text not null,
    channel text not null check (channel in ('sms', 'email', 'call')),
    language text not null,
    state text not null check (state in ('planned', 'deferred', 'sending', 'accepted', 'failed', 'unknown',
        'cancelled')),
    not_before timestamptz,
    provider text,
    provider_message_id text,
    error_code text,
    cancel_reason text,
    send_attempts integer not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
)""",
    "create index if not exists outbox_batch_idx on ops.outbox (batch_id, state)",
    # Write-back: one row per attempt, with what happened and what comes next.
    """create table if not exists ops.outreach_attempts (
    attempt_id bigserial primary key,
    outreach_key text not null references ops.outbox (outreach_key),
    attempted_at timestamptz not null default now(),
    as_of date not null,
    channel text not null,
    rule_id text not null,
    provider_message_id text,
    status text not null,
    error_code text,
    response text,
    next_step text
)""",
    # Opt-outs learned after the extract (STOP replies, unsubscribes): in force before any later send.
    """create table if not exists ops.opt_outs (
    person_id text not null,
    channel text not null,
    status text not null check (status in ('opt_out', 'opt_in')),
    source text not null,
    recorded_at timestamptz not null default now()
)""",
    "create index if not exists opt_outs_person_idx on ops.opt_outs (person_id, channel, recorded_at)",
    # The staff call list, with outcomes staff fill in.
    """create table if not exists ops.call_list (
    outreach_key text primary key references ops.outbox (outreach_key),
    location_id text not null,
    person_id text not null,
    rule_id text not null,
    as_of date not null,
    outcome text check (outcome in ('reached', 'voicemail', 'wrong_number', 'declined', 'not_now', 'booked')),
    outcome_at timestamptz,
    note text
)""",
    # The randomized holdout: eligible people per rule who are recorded and never contacted.
    """create table if not exists ops.holdout (
    person_id text not null,
    rule_id text not null,
    location_id text,
    assigned_on date not null,
    arm text not null check (arm in ('holdout', 'contacted')),
    primary key (person_id, rule_id)
)""",
    """create table if not exists ops.stage_results (
    dag_run_id text not null,
    as_of date not null,
    stage text not null,
    status text not null,
    summary jsonb not null,
    recorded_at timestamptz not null default now(),
    primary key (dag_run_id, stage)
)""",
]


def ensure_schema(url: str) -> None:
    """Create or upgrade the raw and ops schemas (idempotent)."""
    with connect(url) as conn:
        conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.ensure_schema'))")
        for statement in SCHEMA_DDL[:4]:
            conn.execute(statement)
        for statement in _raw_table_ddl():
            conn.execute(statement)
        for statement in SCHEMA_DDL[4:]:
            conn.execute(statement)
        from reactivation.webhooks.schema import WEBHOOK_DDL

        for statement in WEBHOOK_DDL:
            conn.execute(statement)


def record_stage(url: str, *, dag_run_id: str, as_of, stage: str, status: str, summary: dict) -> None:
    """Upsert one stage's summary (counts only) for the run's report."""
    from psycopg.types.json import Jsonb

    with connect(url) as conn:
        conn.execute(
            """insert into ops.stage_results (dag_run_id, as_of, stage, status, summary)
               values (%s, %s, %s, %s, %s)
               on conflict (dag_run_id, stage) do update
               set status = excluded.status, summary = excluded.summary, recorded_at = now()""",
            (dag_run_id, as_of, stage, status, Jsonb(summary)),
        )


def analyze_raw(url: str, entities: list[str] | None = None) -> None:
    """Refresh planner statistics on raw tables after a load (fresh data otherwise gets very slow plans)."""
    names = entities or list(ENTITIES)
    with connect(url, autocommit=True) as conn:
        for name in names:
            if name in ENTITIES:
                conn.execute(f"analyze raw.{name}")
        conn.execute("analyze raw.load_manifest")
