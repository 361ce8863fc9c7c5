"""Identity matching quality: pairwise precision and recall of person_sources against the generator's truth.

Why: the matching rules in dbt_project/models/intermediate/identity trade merging duplicates (recall)
against merging different people (precision). This measures both on a seeded synthetic extract whose
duplicates are known exactly (OUT/truth/duplicates.csv), at realistic scales.

How, for each --patients N: generate an extract (or take --extract DIR), load every location folder into
a fresh database with the production loader, build person_sources and persons with dbt, load the truth
next to them and count pairs of patient records that share a person:

* predicted pairs: pairs of records sharing a person_id in person_sources;
* true pairs: pairs of records sharing a person_key in truth/duplicates.csv;
* precision = true positives / predicted, recall = true positives / true pairs.

Prints counts and timings only, never patient data. Uses a private embedded warehouse (started and
stopped here) unless --warehouse-url is given, and a private dbt target folder.

    .venv/bin/python bench/identity_quality.py --patients 10000
    .venv/bin/python bench/identity_quality.py --patients 10000 100000 --json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

BENCH_STATE = ROOT / ".state" / "identity-bench"
AS_OF = date(2026, 11, 1)

# One row per measured quantity; run against the bench database after the build.
METRICS_SQL = """
with records as (
    select
        person_sources.person_id,
        truth.person_key
    from marts.person_sources as person_sources
    left join bench.identity_truth as truth
        on person_sources.source_location_id = truth.location_id
        and person_sources.patient_id = truth.patient_id
),
predicted as (
    select coalesce(sum(n * (n - 1) / 2), 0) as pairs
    from (select count(*) as n from records group by person_id) as clusters
),
actual as (
    select coalesce(sum(n * (n - 1) / 2), 0) as pairs
    from (select count(*) as n from records where person_key is not null group by person_key) as groups
),
true_positive as (
    select coalesce(sum(n * (n - 1) / 2), 0) as pairs
    from (
        select count(*) as n from records where person_key is not null group by person_key, person_id
    ) as overlap_groups
)
select
    (select count(*) from marts.person_sources) as records,
    (select count(*) from marts.persons) as persons,
    (select count(*) from bench.identity_truth) as truth_records,
    (select count(*) from records where person_key is not null) as truth_records_found,
    predicted.pairs as predicted_pairs,
    actual.pairs as true_pairs,
    true_positive.pairs as true_positive_pairs
from predicted, actual, true_positive
"""

DECISIONS_SQL = """
select decision, decision_reason, count(*)
from intermediate.int_patient_match_pairs
group by decision, decision_reason
order by decision, decision_reason
"""

HOUSEHOLDS_SQL = """
select count(distinct household_id), count(*) filter (where household_size > 1)
from marts.persons
"""


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and what to look at."""


def _create_database(admin_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'create database "{name}"')
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}"


def _drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _load_truth(url: str, truth_file: Path) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("create schema if not exists bench")
        conn.execute("drop table if exists bench.identity_truth")
        conn.execute("create table bench.identity_truth (person_key text, location_id text, patient_id text)")
        count = 0
        with truth_file.open(encoding="utf-8", newline="") as handle, conn.cursor() as cur:
            reader = csv.reader(handle)
            header = next(reader)
            if header != ["person_key", "location_id", "patient_id"]:
                raise BenchError(f"{truth_file}: header {header}; expected person_key, location_id, patient_id")
            with cur.copy("copy bench.identity_truth (person_key, location_id, patient_id) from stdin") as copy:
                for row in reader:
                    copy.write_row(row)
                    count += 1
    return count


def _own_failures(build: dict, target: Path) -> list[dict]:
    """The build's failures, less tests of models this selection did not build.

    dbt's eager indirect selection also runs tests of other models that merely refer to persons (say a
    relationships test from an outreach model); they error because their model was not built here.
    """
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())["results"]
    built = {item["unique_id"] for item in results if item["unique_id"].split(".")[0] in {"model", "seed"}}
    nodes = {**manifest["nodes"], **manifest.get("unit_tests", {})}
    return [
        failure
        for failure in build["failures"]
        if all(
            dependency in built
            for dependency in nodes.get(failure["node"], {}).get("depends_on", {}).get("nodes", [])
            if dependency.split(".")[0] in {"model", "seed"}
        )
    ]


def _query(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def measure(
    url: str, *, patients: int, locations: int, seed: int, extract: Path | None, work_dir: Path, threads: int
) -> dict:
    """Generate (unless given), load, build and score one extract; returns counts, ratios and seconds."""
    from reactivation.generate import generate_extract
    from reactivation.ingest.pipeline import load_path
    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt_build

    timings: dict[str, float] = {}
    started = time.monotonic()
    if extract is None:
        extract = work_dir / f"extract-{patients}-{locations}-{seed}"
        if extract.exists():
            shutil.rmtree(extract)
        generate_extract(extract, patients=patients, locations=locations, seed=seed, as_of=AS_OF)
    timings["generate"] = time.monotonic() - started
    truth_file = extract / "truth" / "duplicates.csv"
    folders = sorted(p for p in extract.iterdir() if p.is_dir() and p.name.startswith("loc_"))
    if not folders or not truth_file.exists():
        raise BenchError(f"{extract} holds no loc_* folders or no truth/duplicates.csv: not a generated extract")

    started = time.monotonic()
    for folder in folders:
        summary = load_path(url, folder, fmt="csv", location=folder.name)
        if summary.totals["rejected"]:
            raise BenchError(f"loading {folder.name} rejected {summary.totals['rejected']} file(s)")
    timings["load"] = time.monotonic() - started

    # A private dbt target folder, so parallel dbt runs elsewhere are not disturbed.
    os.environ["REACTIVATION_STATE_DIR"] = str(work_dir / "state")
    os.environ["REACTIVATION_DBT_THREADS"] = str(threads)
    get_settings.cache_clear()
    started = time.monotonic()
    build = run_dbt_build(url, as_of=AS_OF, select="+person_sources +persons")
    timings["build"] = time.monotonic() - started
    failures = _own_failures(build, get_settings().state_dir / "dbt" / "target")
    if failures:
        raise BenchError(f"dbt build failed: {json.dumps(failures)}")

    truth_rows = _load_truth(url, truth_file)
    ((records, persons, truth_records, found, predicted, actual, true_positive),) = _query(url, METRICS_SQL)
    if found != truth_records:
        raise BenchError(f"{truth_records - found} truth records are missing from person_sources")
    decisions = {f"{decision}/{reason}": count for decision, reason, count in _query(url, DECISIONS_SQL)}
    ((households, people_in_shared_households),) = _query(url, HOUSEHOLDS_SQL)
    return {
        "patients": patients,
        "locations": len(folders),
        "records": records,
        "persons": persons,
        "truth_records": truth_rows,
        "true_pairs": int(actual),
        "predicted_pairs": int(predicted),
        "true_positive_pairs": int(true_positive),
        "precision": round(int(true_positive) / int(predicted), 4) if predicted else None,
        "recall": round(int(true_positive) / int(actual), 4) if actual else None,
        "pair_decisions": decisions,
        "households": households,
        "people_in_shared_households": people_in_shared_households,
        "seconds": {step: round(value, 1) for step, value in timings.items()},
        "dbt_nodes": build["nodes"],
    }


def _print_result(result: dict) -> None:
    seconds = result["seconds"]
    print(
        f"patients={result['patients']:,} records={result['records']:,} persons={result['persons']:,} "
        f"locations={result['locations']}"
    )
    print(
        f"  pairs: true={result['true_pairs']:,} predicted={result['predicted_pairs']:,} "
        f"true_positive={result['true_positive_pairs']:,}"
    )
    print(f"  precision={result['precision']} recall={result['recall']}")
    print("  pair decisions: " + ", ".join(f"{key}={value:,}" for key, value in result["pair_decisions"].items()))
    print(
        f"  households={result['households']:,} people_in_shared_households={result['people_in_shared_households']:,}"
    )
    print(f"  seconds: generate={seconds['generate']} load={seconds['load']} build={seconds['build']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--patients", type=int, nargs="+", default=[10_000, 100_000], help="people per run (default: 10000 100000)"
    )
    parser.add_argument("--locations", type=int, default=3, help="locations per extract (default 3)")
    parser.add_argument("--seed", type=int, default=20261101, help="generator seed")
    parser.add_argument("--extract", type=Path, help="use this generated extract instead of generating one")
    parser.add_argument("--warehouse-url", help="admin URL of a PostgreSQL server (default: a private embedded one)")
    parser.add_argument("--threads", type=int, default=2, help="dbt threads (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the bench databases and extracts")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.extract is not None and len(args.patients) > 1:
        parser.error("--extract measures one extract: give a single --patients (used as its label)")

    from reactivation.embedded_warehouse import EmbeddedWarehouse

    work_dir = BENCH_STATE / uuid.uuid4().hex[:8]
    work_dir.mkdir(parents=True)
    server = None
    admin_url = args.warehouse_url
    if admin_url is None:
        server = EmbeddedWarehouse(work_dir / "warehouse")
        server.start()
        admin_url = server.admin_url()
    results = []
    try:
        for patients in args.patients:
            name = f"identity_bench_{patients}_{uuid.uuid4().hex[:6]}"
            url = _create_database(admin_url, name)
            try:
                result = measure(
                    url,
                    patients=patients,
                    locations=args.locations,
                    seed=args.seed,
                    extract=args.extract,
                    work_dir=work_dir,
                    threads=args.threads,
                )
            finally:
                if not args.keep:
                    _drop_database(admin_url, name)
            results.append(result)
            if not args.json:
                _print_result(result)
    except BenchError as err:
        print(f"identity_quality: {err}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(work_dir, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
