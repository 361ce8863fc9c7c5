"""Warehouse roles with least privilege, and location-scoped reporting through row-level security.

Four group roles (``NOLOGIN``; people and services log in as their own users and
are granted one of them):

- ``reactivation_loader``: the raw layer only: insert and read its tables (delete
  within a load, to quarantine exact duplicates; update the load manifest), use its
  sequences; record its stage in ``ops.stage_results``.
- ``reactivation_transformer``: read raw and the ``ops`` tables dbt declares as
  sources; create and use the staging, intermediate, marts and reference schemas.
- ``reactivation_sender``: read the marts, staging views and seeds outreach needs;
  read and write the ``ops`` outreach tables; nothing in raw.
- ``reactivation_reporter``: read the reporting marts (``marts.rpt_*``) and
  ``ops.quality_results``; nothing else.

Location-scoped reporters are roles mapped to locations in ``ops.reporter_locations``
(``reactivation_reporter_<location>`` for every known location, plus any role given
with ``--location-scope ROLE=LOC1,LOC2``). They read only the reporting marts that
have a ``location_id``, and row-level security, enabled and FORCED on those tables,
shows each role only the rows of its locations. The policy is deny-by-default: a
role sees a row only if it is a member of a role mapped to the row's location or to
``*`` (all locations: the unscoped reporter, the transformer and each table's owner,
unless the owner has been given an explicit scope). Superusers bypass row-level
security, as PostgreSQL always does.

dbt replaces its tables on every build, which drops their grants and policies:
``apply_row_security`` puts both back and must run after every ``dbt build``. Until
it runs, the new tables have no grants, so scoped reporters are refused, not leaked to.
"""

from __future__ import annotations

import argparse
import logging
import re

import psycopg
from psycopg import sql

from reactivation.warehouse import connect, ensure_schema

log = logging.getLogger(__name__)

LOADER = "reactivation_loader"
TRANSFORMER = "reactivation_transformer"
SENDER = "reactivation_sender"
REPORTER = "reactivation_reporter"
GROUP_ROLES = (LOADER, TRANSFORMER, SENDER, REPORTER)
SCOPED_PREFIX = "reactivation_reporter_"
ALL_LOCATIONS = "*"
POLICY = "reactivation_location_scope"

MODEL_SCHEMAS = ("staging", "intermediate", "marts", "reference")
REPORTING_PATTERN = "rpt\\_%"
# Tables (or views) outside ops that outreach planning, sending and the webhook receiver read.
SENDER_READS = {
    "marts": ("outreach_candidates", "outreach_suppressions", "care_gaps", "persons", "person_sources"),
    "staging": ("stg_emr__patients", "stg_emr__locations", "stg_emr__appointments", "stg_emr__contact_preferences"),
    "reference": ("message_reasons", "contact_policy", "outreach_segments", "care_gap_rules"),
}
# ops tables the outreach engine and the webhook receiver write (select, insert, update).
SENDER_WRITES = (
    "outreach_touches",
    "episodes",
    "batches",
    "outbox",
    "outreach_attempts",
    "opt_outs",
    "call_list",
    "holdout",
    "message_status",
    "inbound_messages",
    "staff_queue",
    "webhook_counters",
)
# Append-only ops tables the sender side inserts into and reads, never updates.
SENDER_APPENDS = ("provider_events",)
SENDER_READS_OPS = ("gate_decisions",)
# Every stage records its summary (an upsert: insert and update).
STAGE_WRITERS = (LOADER, TRANSFORMER, SENDER)
# Read by dbt when no source file can be parsed (the staging/ops sources).
DEFAULT_DBT_OPS_SOURCES = ("outreach_touches", "opt_outs")

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

MAPPING_DDL = [
    """create table if not exists ops.reporter_locations (
    role_name text not null,
    location_id text not null,
    kind text not null default 'scope' check (kind in ('scope', 'all', 'owner')),
    primary key (role_name, location_id)
)""",
    "revoke all on ops.reporter_locations from public",
    # Security definer: scoped roles learn their own scope without reading the mapping table.
    # pg_roles is joined so a mapping row naming a dropped role is ignored instead of an error.
    """create or replace function ops.reporter_scope(who name) returns text[]
    language sql stable security definer
    set search_path = pg_catalog, pg_temp
as $$
    select coalesce(array_agg(distinct mapping.location_id), '{}'::text[])
    from ops.reporter_locations as mapping
    join pg_catalog.pg_roles as r on r.rolname = mapping.role_name
    where pg_catalog.pg_has_role(who, r.oid, 'MEMBER')
$$""",
    "revoke all on function ops.reporter_scope(name) from public",
]


class RolesError(ValueError):
    """A role or location scope is malformed; the message names it."""


def scoped_role_name(location_id: str) -> str:
    """``reactivation_reporter_<location>``, the location id folded to a valid role name."""
    slug = re.sub(r"[^a-z0-9_]+", "_", location_id.lower()).strip("_") or "location"
    return (SCOPED_PREFIX + slug)[:63]


def _check_role_name(name: str) -> str:
    if not ROLE_NAME.match(name):
        raise RolesError(f"not a usable role name: {name!r} (lowercase letters, digits and _, at most 63)")
    if name in GROUP_ROLES:
        raise RolesError(f"{name} is a group role; scope a reporter role such as {SCOPED_PREFIX}<location> instead")
    return name


def _create_role(conn: psycopg.Connection, name: str) -> bool:
    """Create a NOLOGIN role unless it exists; roles are cluster-wide, so a concurrent creator may win."""
    if conn.execute("select 1 from pg_roles where rolname = %s", (name,)).fetchone():
        return False
    try:
        with conn.transaction():
            conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(name)))
    except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        return False
    log.info("created role %s", name)
    return True


def _existing(conn: psycopg.Connection, schema: str, names: tuple[str, ...] | list[str]) -> list[str]:
    rows = conn.execute(
        """select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = %s and c.relname = any(%s) and c.relkind in ('r', 'v', 'm', 'p', 'f')
           order by 1""",
        (schema, list(names)),
    ).fetchall()
    return [r[0] for r in rows]


def _relations(conn: psycopg.Connection, schema: str, like: str = "%") -> list[str]:
    rows = conn.execute(
        """select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where n.nspname = %s and c.relname like %s and c.relkind in ('r', 'v', 'm', 'p', 'f')
           order by 1""",
        (schema, like),
    ).fetchall()
    return [r[0] for r in rows]


def _grant(conn: psycopg.Connection, privileges: str, schema: str, tables: list[str], role: str) -> int:
    for table in tables:
        conn.execute(
            sql.SQL("grant {privileges} on {table} to {role}").format(
                privileges=sql.SQL(privileges), table=sql.Identifier(schema, table), role=sql.Identifier(role)
            )
        )
    return len(tables)


def dbt_ops_sources() -> tuple[str, ...]:
    """The ``ops`` tables the dbt project declares as sources (what the transformer must read)."""
    import yaml

    from reactivation.transform import DBT_PROJECT_DIR

    tables: set[str] = set()
    for path in sorted((DBT_PROJECT_DIR / "models").rglob("*.yml")):
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for source in document.get("sources") or []:
            if (source.get("schema") or source.get("name")) != "ops":
                continue
            tables.update(t["name"] for t in source.get("tables") or [] if isinstance(t, dict) and t.get("name"))
    return tuple(sorted(tables)) or DEFAULT_DBT_OPS_SOURCES


def known_locations(conn: psycopg.Connection) -> list[str]:
    """Locations that delivered an extract, plus any a location-bearing reporting mart names."""
    locations: set[str] = set()
    if conn.execute("select to_regclass('raw.load_manifest')").fetchone()[0] is not None:
        locations.update(r[0] for r in conn.execute("select distinct location_id from raw.load_manifest"))
    for table in _location_tables(conn):
        query = sql.SQL("select distinct location_id from {} where location_id is not null").format(
            sql.Identifier("marts", table)
        )
        locations.update(r[0] for r in conn.execute(query))
    return sorted(locations)


def _location_tables(conn: psycopg.Connection) -> list[str]:
    """Reporting marts (tables) with a ``location_id`` column: the ones row-level security scopes."""
    rows = conn.execute(
        """select c.relname from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
           join pg_attribute a on a.attrelid = c.oid and a.attname = 'location_id' and not a.attisdropped
           where n.nspname = 'marts' and c.relname like %s and c.relkind in ('r', 'p')
           order by 1""",
        (REPORTING_PATTERN,),
    ).fetchall()
    return [r[0] for r in rows]


def _static_grants(conn: psycopg.Connection) -> None:
    """Grants on what the pipeline itself creates (raw, ops, the model schemas): stable across dbt builds."""
    ident = sql.Identifier
    for schema in MODEL_SCHEMAS:
        conn.execute(sql.SQL("create schema if not exists {}").format(ident(schema)))
    # Loader: the raw layer.
    raw_tables = _relations(conn, "raw")
    conn.execute(sql.SQL("grant usage on schema raw to {}").format(ident(LOADER)))
    _grant(conn, "select, insert", "raw", raw_tables, LOADER)
    entity_tables = [t for t in raw_tables if t not in {"load_manifest", "quarantine"}]
    _grant(conn, "delete", "raw", entity_tables, LOADER)
    _grant(conn, "update", "raw", _existing(conn, "raw", ["load_manifest"]), LOADER)
    conn.execute(sql.SQL("grant usage on all sequences in schema raw to {}").format(ident(LOADER)))
    # Transformer: reads raw and dbt's ops sources, builds the model schemas.
    conn.execute(sql.SQL("grant usage on schema raw, ops to {}").format(ident(TRANSFORMER)))
    _grant(conn, "select", "raw", raw_tables, TRANSFORMER)
    _grant(conn, "select", "ops", _existing(conn, "ops", dbt_ops_sources()), TRANSFORMER)
    for schema in MODEL_SCHEMAS:
        conn.execute(sql.SQL("grant usage, create on schema {} to {}").format(ident(schema), ident(TRANSFORMER)))
    # Sender: ops outreach tables; the marts it reads are granted in apply_row_security (dbt rebuilds them).
    conn.execute(sql.SQL("grant usage on schema ops, marts, staging, reference to {}").format(ident(SENDER)))
    _grant(conn, "select, insert, update", "ops", _existing(conn, "ops", SENDER_WRITES), SENDER)
    _grant(conn, "select, insert", "ops", _existing(conn, "ops", SENDER_APPENDS), SENDER)
    _grant(conn, "select", "ops", _existing(conn, "ops", SENDER_READS_OPS), SENDER)
    conn.execute(sql.SQL("grant usage on all sequences in schema ops to {}").format(ident(SENDER)))
    # Every stage records its summary.
    for role in STAGE_WRITERS:
        conn.execute(sql.SQL("grant usage on schema ops to {}").format(ident(role)))
        _grant(conn, "select, insert, update", "ops", _existing(conn, "ops", ["stage_results"]), role)
    # Reporter: the quality trend from ops; the reporting marts are granted in apply_row_security.
    conn.execute(sql.SQL("grant usage on schema ops, marts to {}").format(ident(REPORTER)))
    _grant(conn, "select", "ops", _existing(conn, "ops", ["quality_results"]), REPORTER)
    for role in (REPORTER, TRANSFORMER):
        conn.execute(sql.SQL("grant execute on function ops.reporter_scope(name) to {}").format(ident(role)))


def _scoped_roles(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """select distinct m.role_name from ops.reporter_locations m join pg_roles r on r.rolname = m.role_name
           where m.kind = 'scope' order by 1"""
    ).fetchall()
    return [r[0] for r in rows]


def ensure_roles(
    url: str, *, location_scopes: dict[str, list[str]] | None = None, locations: list[str] | None = None
) -> dict:
    """Create the group roles, the per-location reporter roles and their grants; then secure the reporting marts.

    ``location_scopes`` maps extra role names to the locations they may read (created NOLOGIN if
    missing; their scope is replaced). ``locations`` overrides the known locations that get a
    ``reactivation_reporter_<location>`` role (default: every location that delivered an extract
    or appears in a reporting mart). Idempotent; needs a role that may create roles and owns, or is
    a superuser over, the pipeline's schemas.
    """
    scopes: dict[str, list[str]] = {}
    for role, locs in (location_scopes or {}).items():
        cleaned = sorted({loc.strip() for loc in locs if loc and loc.strip()})
        if not cleaned:
            raise RolesError(f"location scope for {role} names no location")
        if ALL_LOCATIONS in cleaned:
            raise RolesError(f"location scope for {role}: '*' is not a location (grant {REPORTER} instead)")
        scopes[_check_role_name(role)] = cleaned
    ensure_schema(url)
    with connect(url, autocommit=True) as conn:
        created = [role for role in GROUP_ROLES if _create_role(conn, role)]
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.roles'))")
            for statement in MAPPING_DDL:
                conn.execute(statement)
            per_location: dict[str, list[str]] = {}
            for loc in locations if locations is not None else known_locations(conn):
                # Two ids that fold to one role name ("loc-a", "loc_a") share the role: both stay readable.
                per_location.setdefault(scoped_role_name(loc), []).append(loc)
        for role in [*per_location, *scopes]:
            if _create_role(conn, role):
                created.append(role)
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.roles'))")
            for role, locs in {**per_location, **scopes}.items():
                conn.execute("delete from ops.reporter_locations where role_name = %s and kind = 'scope'", (role,))
                conn.cursor().executemany(
                    "insert into ops.reporter_locations (role_name, location_id, kind) values (%s, %s, 'scope')"
                    " on conflict do nothing",
                    [(role, loc) for loc in locs],
                )
            for role in (REPORTER, TRANSFORMER):
                conn.execute(
                    "insert into ops.reporter_locations (role_name, location_id, kind) values (%s, %s, 'all')"
                    " on conflict do nothing",
                    (role, ALL_LOCATIONS),
                )
            _static_grants(conn)
    secured = apply_row_security(url)
    return {
        "created_roles": created,
        "scoped_roles": {role: locs for role, locs in sorted({**per_location, **scopes}.items())},
        **secured,
    }


def apply_row_security(url: str) -> dict:
    """Put grants and row-level security back on what dbt rebuilt; call after every ``dbt build``.

    Idempotent. Does nothing (and says so) until ``ensure_roles`` has set the roles up in this
    warehouse. For each ``marts.rpt_*`` table with a ``location_id``: row-level security enabled
    and forced, the location policy (re)created, its owner mapped to all locations unless the owner
    has an explicit scope. Then SELECT for the reporter on every ``marts.rpt_*``, for scoped
    reporters on the location-bearing ones only, for the sender on what outreach reads, and for the
    transformer on everything in the model schemas.
    """
    ident = sql.Identifier
    with connect(url, autocommit=True) as conn:
        if conn.execute("select to_regclass('ops.reporter_locations')").fetchone()[0] is None:
            return {"applied": False, "reason": "roles not set up: run `reactivation roles apply`"}
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.roles'))")
            location_tables = _location_tables(conn)
            reporting = _relations(conn, "marts", REPORTING_PATTERN)
            scoped = _scoped_roles(conn)
            owners = conn.execute(
                """select distinct pg_get_userbyid(c.relowner)
                   from pg_class c join pg_namespace n on n.oid = c.relnamespace
                   where n.nspname = 'marts' and c.relname = any(%s)""",
                (location_tables,),
            ).fetchall()
            for (owner_name,) in owners:
                conn.execute(
                    """insert into ops.reporter_locations (role_name, location_id, kind)
                       select %s, %s, 'owner'
                       where not exists (select 1 from ops.reporter_locations where role_name = %s and kind = 'scope')
                       on conflict do nothing""",
                    (owner_name, ALL_LOCATIONS, owner_name),
                )
                conn.execute(
                    "delete from ops.reporter_locations where role_name = %s and kind = 'owner'"
                    " and exists (select 1 from ops.reporter_locations where role_name = %s and kind = 'scope')",
                    (owner_name, owner_name),
                )
            # The scalar subquery runs once per statement (an InitPlan), not once per row.
            scope = sql.SQL(
                "'*' = any((select ops.reporter_scope(current_user))::text[]) "
                "or location_id = any((select ops.reporter_scope(current_user))::text[])"
            )
            for table in location_tables:
                target = ident("marts", table)
                conn.execute(sql.SQL("alter table {} enable row level security").format(target))
                conn.execute(sql.SQL("alter table {} force row level security").format(target))
                conn.execute(sql.SQL("drop policy if exists {} on {}").format(ident(POLICY), target))
                conn.execute(
                    sql.SQL("create policy {} on {} for all to public using ({}) with check ({})").format(
                        ident(POLICY), target, scope, scope
                    )
                )
            grants = _grant(conn, "select", "marts", reporting, REPORTER)
            for role in scoped:
                conn.execute(sql.SQL("grant usage on schema marts to {}").format(ident(role)))
                grants += _grant(conn, "select", "marts", location_tables, role)
            # Whoever the policy maps (scoped roles, the unscoped ones, table owners) must be able to ask its scope.
            mapped = conn.execute(
                """select distinct m.role_name from ops.reporter_locations m
                   join pg_roles r on r.rolname = m.role_name order by 1"""
            ).fetchall()
            for (role,) in mapped:
                conn.execute(sql.SQL("grant execute on function ops.reporter_scope(name) to {}").format(ident(role)))
            for schema, names in SENDER_READS.items():
                grants += _grant(conn, "select", schema, _existing(conn, schema, names), SENDER)
            for schema in MODEL_SCHEMAS:
                if conn.execute("select to_regnamespace(%s)", (schema,)).fetchone()[0] is not None:
                    conn.execute(
                        sql.SQL("grant select on all tables in schema {} to {}").format(
                            ident(schema), ident(TRANSFORMER)
                        )
                    )
    log.info("row-level security on %d reporting table(s); %d grant(s) re-applied", len(location_tables), grants)
    return {"applied": True, "secured_tables": location_tables, "reporting_tables": reporting, "scoped": scoped}


def _parse_scope(value: str) -> tuple[str, list[str]]:
    role, sep, locations = value.partition("=")
    if not sep or not role.strip() or not locations.strip():
        raise argparse.ArgumentTypeError(f"use ROLE=LOC1,LOC2 (got {value!r})")
    return role.strip(), [loc.strip() for loc in locations.split(",") if loc.strip()]


def _cmd_roles(args: argparse.Namespace) -> int:
    import json

    from reactivation.cli import UsageError
    from reactivation.warehouse import warehouse_url

    with warehouse_url() as url:
        try:
            if args.action == "apply":
                result = ensure_roles(url, location_scopes=dict(args.location_scope or []))
            else:
                result = apply_row_security(url)
        except RolesError as err:
            raise UsageError(str(err)) from None
        except psycopg.errors.InsufficientPrivilege as err:
            raise UsageError(
                f"the warehouse user may not do this ({err.sqlstate}): run it as the warehouse owner"
            ) from None
    print(json.dumps(result, indent=2))
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``reactivation roles`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "roles",
        help="create the least-privilege warehouse roles and location-scoped reporting (row-level security)",
        description="apply: create the loader, transformer, sender and reporter roles, one reporter role per "
        "location, their grants, and row-level security on the location-bearing reporting marts. "
        "secure: only re-apply grants and row-level security after a dbt build.",
    )
    parser.add_argument("action", choices=["apply", "secure"])
    parser.add_argument(
        "--location-scope",
        type=_parse_scope,
        action="append",
        metavar="ROLE=LOC1,LOC2",
        help="a reporter role that may read only these locations (repeatable)",
    )
    parser.set_defaults(func=_cmd_roles)
