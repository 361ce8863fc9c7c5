"""Benchmark: the quality gate against one hand-written SQL statement doing the same checks.

    .venv/bin/python bench/gate_bench.py --patients 100000 [--locations 5] [--repeat 2]

Generates a seeded multi-location extract (``reactivation generate``), loads it,
builds the dbt marts, then times, in the same run on the same warehouse:

* **gate**: ``run_gate_check`` as the nightly DAG runs it: open the committed GX
  context, run the checkpoint (SQL pushdown), fetch the failing locations, store
  results and decision, build Data Docs. Reported cold (first call in the process:
  includes importing GX) and warm (best of ``--repeat``).
* **hand SQL**: one statement, no GX, that evaluates every check of the committed
  suites (their SQL, ``{batch}`` replaced by the table) plus the row counts and the
  priority range, returning one count per check; best of ``--repeat``.

It prints seconds and the ratio gate / hand SQL (target: at most 3x) and checks the
two agree on which checks fail. Default 100,000 patients takes a few minutes; the
design target is 1,000,000 patients (``--patients 1000000``: generation, load and
dbt build take the better part of an hour on a 2-core box; the gate itself is
budgeted at 2 minutes there).

``--marts synthetic`` builds only staging and identity with dbt and derives the
two outreach marts in SQL (a quarter of the reachable people as candidates): use it
when the care-gap models are too slow to wait for; the gate's work is the same.

``--existing URL --as-of DATE`` times the two sides on a warehouse already loaded and built
for that as-of date (for example the one bench/dbt_bench.py leaves behind), preparing nothing;
the gate's results rows are written there, tagged ``bench-N``.

Otherwise uses ``WAREHOUSE_URL`` when set (a fresh database is created next to it and
dropped at the end unless ``--keep``), else an embedded server under
``.state/bench/gate``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

AS_OF = date(2026, 11, 1)


def hand_sql() -> str:
    """The same checks as the committed suites, as one SQL statement (one count per check)."""
    from reactivation.quality.suites import SUITES

    parts = []
    for suite in SUITES:
        table = f"{suite.schema}.{suite.table}"
        for check in suite.checks:
            label = f"'{suite.name}' as suite, '{check.name}' as expectation"
            if "unexpected_rows_query" in check.kwargs:
                query = check.kwargs["unexpected_rows_query"].format(batch=table)
                parts.append(f"select {label}, (select count(*) from ({query}) as failing) as failing")
            elif check.type == "expect_table_row_count_to_be_between":
                # No previous runs in a fresh bench warehouse: the bound is open, as in the gate.
                parts.append(f"select {label}, (select count(*) * 0 from {table}) as failing")
            elif check.type in {"expect_column_values_to_be_between", "expect_column_values_to_be_in_set"}:
                column, mostly = check.kwargs["column"], check.kwargs.get("mostly", 1)
                if check.type == "expect_column_values_to_be_between":
                    outside = f"{column} not between {check.kwargs['min_value']} and {check.kwargs['max_value']}"
                else:
                    outside = f"{column} not in ({', '.join(repr(v) for v in check.kwargs['value_set'])})"
                parts.append(
                    f"select {label}, (select case when count(*) filter (where {outside}) > {1 - mostly} * "
                    f"count({column}) then 1 else 0 end from {table}) as failing"
                )
            else:
                raise SystemExit(f"the bench does not know how to write {check.type} by hand")
    return "\nunion all\n".join(parts)


def run_hand_sql(url: str, params) -> tuple[float, set[str]]:
    import psycopg

    statement = hand_sql()
    options = " ".join(f"-c {k}={v}" for k, v in params.session_settings().items())
    started = time.monotonic()
    with psycopg.connect(url, options=options) as conn:
        rows = conn.execute(statement).fetchall()
    return time.monotonic() - started, {f"{suite}:{name}" for suite, name, failing in rows if failing}


def run_gate(url: str, state_dir: Path, run: int, as_of: date = AS_OF) -> tuple[float, set[str], dict]:
    from reactivation.quality.gate import run_gate_check

    started = time.monotonic()
    decision = run_gate_check(url, as_of=as_of, dag_run_id=f"bench-{run}", state_dir=state_dir)
    seconds = time.monotonic() - started
    failed = {f"{f.suite}:{f.expectation}" for f in decision.expectations if not f.success}
    return seconds, failed, decision.timings


SYNTHETIC_MARTS = """
drop table if exists marts.outreach_candidates;
create table marts.outreach_candidates as
select
    persons.person_id,
    persons.household_id,
    persons.home_location_id as location_id,
    'dormant' as rule_id,
    'due for a check-up' as reason,
    cast(null as text) as other_open_rules,
    'lapsed_preventive' as segment,
    cast(50 as numeric) as priority_score,
    case when persons.phone_is_valid then 'sms' else 'email' end as preferred_channel,
    persons.language,
    concat_ws(',', case when persons.phone_is_valid then 'sms' end, case when persons.email_is_valid then 'email' end)
        as contactable_channels,
    persons.timezone,
    cast(:as_of as date) - 30 as due_date,
    30 as days_overdue,
    cast(:as_of as date) as as_of
from marts.persons as persons
where
    (persons.phone_is_valid or persons.email_is_valid)
    and abs(hashtext(persons.person_id)) % 4 = 0
    and not exists (
        select 1
        from marts.person_sources as sources
        inner join staging.stg_emr__patients as patients
            on sources.patient_key = patients.patient_key
        left join staging.stg_emr__appointments as appointments
            on
                appointments.source_system = sources.source_system
                and appointments.source_location_id = sources.source_location_id
                and appointments.patient_id = sources.patient_id
                and appointments.status = 'booked'
                and cast(appointments.scheduled_at as date) > cast(:as_of as date)
        left join staging.stg_emr__contact_preferences as preferences
            on
                preferences.source_system = sources.source_system
                and preferences.source_location_id = sources.source_location_id
                and preferences.patient_id = sources.patient_id
                and preferences.status = 'opt_out'
        where
            sources.person_id = persons.person_id
            and (
                patients.deceased or patients.deceased_date is not null
                or appointments.patient_id is not null or preferences.patient_id is not null
            )
    );
drop table if exists marts.outreach_suppressions;
create table marts.outreach_suppressions as
select
    persons.person_id,
    'dormant' as rule_id,
    persons.home_location_id as location_id,
    'no_valid_contact' as reason_code,
    'no valid phone or email' as detail,
    cast(:as_of as date) as as_of
from marts.persons as persons
where not (persons.phone_is_valid or persons.email_is_valid);
"""


def prepare(url: str, args, work: Path) -> dict[str, float]:
    from reactivation.generate import generate_extract
    from reactivation.ingest.pipeline import load_path
    from reactivation.transform import run_dbt, run_dbt_build

    timings = {}
    extract = work / "extract"
    started = time.monotonic()
    generate_extract(
        extract, patients=args.patients, locations=args.locations, seed=args.seed, as_of=args.as_of, overwrite=True
    )
    timings["generate"] = time.monotonic() - started
    started = time.monotonic()
    for location in sorted(p.name for p in extract.iterdir() if (p / "patients.csv").exists()):
        load_path(url, extract / location, fmt="csv", location=location)
    timings["load"] = time.monotonic() - started
    started = time.monotonic()
    if args.marts == "dbt":
        built = run_dbt_build(url, as_of=args.as_of)
        if not built["success"]:
            raise SystemExit(f"dbt build failed: {built['failures']}")
    else:
        # Only what the gate reads besides the outreach marts; tests of models left out are left out too.
        selection = ["--select", "path:models/staging +persons +person_sources", "--indirect-selection", "cautious"]
        process, _ = run_dbt(url, ["build", *selection], as_of=args.as_of)
        if process.returncode != 0:
            raise SystemExit("dbt build failed:\n" + "\n".join(process.stdout.splitlines()[-15:]))
    timings["dbt build"] = time.monotonic() - started
    if args.marts == "synthetic":
        import psycopg

        started = time.monotonic()
        with psycopg.connect(url) as conn:
            # Several statements in one simple-protocol call: the date goes in as a literal.
            conn.execute(SYNTHETIC_MARTS.replace(":as_of", f"'{args.as_of.isoformat()}'"))
        timings["marts"] = time.monotonic() - started
    shutil.rmtree(extract, ignore_errors=True)
    return timings


def compare(url: str, args: argparse.Namespace, work: Path) -> int:
    """Time the gate and the hand-written SQL on one built warehouse; 1 when they disagree on what fails."""
    from reactivation.quality.gate import run_parameters

    params = run_parameters(args.as_of)
    run_hand_sql(url, params)  # untimed: both sides then start from the same warm buffer cache
    cold, gate_failed, _ = run_gate(url, work / "state", 0, args.as_of)
    gate_runs, hand_runs, breakdowns = [], [], []
    hand_failed: set[str] = set()
    for run in range(1, args.repeat + 1):
        seconds, hand_failed = run_hand_sql(url, params)
        hand_runs.append(seconds)
        seconds, gate_failed, timings = run_gate(url, work / "state", run, args.as_of)
        gate_runs.append(seconds)
        breakdowns.append(timings)
    gate, hand = min(gate_runs), min(hand_runs)
    print(f"gate (first call in the process, imports GX) {cold:8.2f} s")
    print(f"gate (warm, best of {args.repeat})                       {gate:8.2f} s")
    best = breakdowns[gate_runs.index(gate)]
    print("  of which: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in best.items()))
    print(f"hand-written SQL (best of {args.repeat})                 {hand:8.2f} s")
    print(f"ratio gate / hand SQL: warm {gate / hand:.2f}x, first call {cold / hand:.2f}x (target <= 3x)")
    agree = gate_failed == hand_failed
    print(f"same checks fail on both sides: {'yes' if agree else 'NO'} ({', '.join(sorted(gate_failed)) or 'none'})")
    if not agree:
        print(f"  only gate: {sorted(gate_failed - hand_failed)}; only SQL: {sorted(hand_failed - gate_failed)}")
    return 0 if agree else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="people to generate (default 100000)")
    parser.add_argument("--locations", type=int, default=5, help="locations (default 5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each side; the best counts (default 2)")
    parser.add_argument(
        "--marts",
        choices=["dbt", "synthetic"],
        default="dbt",
        help="dbt: build the whole project; synthetic: build staging and identity with dbt and derive the two "
        "outreach marts in SQL (a quarter of the reachable people as candidates), when the care-gap models are "
        "too slow to wait for",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument("--existing", metavar="URL", help="a warehouse already loaded and built: time only")
    parser.add_argument("--as-of", type=date.fromisoformat, default=AS_OF, help="the built as-of date")
    args = parser.parse_args(argv)

    import psycopg

    os.environ.setdefault("DO_NOT_TRACK", "1")
    work = ROOT / ".state" / "bench" / "gate"
    work.mkdir(parents=True, exist_ok=True)
    os.environ["REACTIVATION_STATE_DIR"] = str(work / "state")
    from reactivation.settings import get_settings

    get_settings.cache_clear()
    if args.existing:
        return compare(args.existing, args, work)
    server = None
    base = os.environ.get("WAREHOUSE_URL")
    if not base:
        from reactivation.embedded_warehouse import EmbeddedWarehouse

        server = EmbeddedWarehouse(work / "warehouse")
        server.start()
        base = server.admin_url()
    name = f"bench_gate_{uuid.uuid4().hex[:8]}"
    admin = base.rpartition("/")[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{base.rpartition('/')[0]}/{name}"
    try:
        print(f"preparing {args.patients} patients at {args.locations} locations ...", flush=True)
        timings = prepare(url, args, work)
        for step, seconds in timings.items():
            print(f"  {step:<10} {seconds:8.1f} s")
        return compare(url, args, work)
    finally:
        if not args.keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
