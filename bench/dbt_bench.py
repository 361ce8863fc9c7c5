"""dbt benchmark: the full nightly build on a generated extract, then a 1% nightly delta.

Why: the nightly DAG runs the whole dbt project as one ``dbt build`` (nightly.transform ->
reactivation.transform.run_dbt_build); the targets (DESIGN.md, issue 4) are at most 10 minutes
for a full build on 1M patients and 3 minutes for a nightly delta touching 1% of them.

    .venv/bin/python bench/dbt_bench.py                       # 1M patients, 5 locations (~11M rows)
    .venv/bin/python bench/dbt_bench.py --patients 100000     # a quick look
    .venv/bin/python bench/dbt_bench.py --verify              # then a --full-refresh, marts compared

It generates (or reuses) a seeded extract under .state/bench-dbt, starts a private embedded
PostgreSQL under .state/bench-dbt/warehouse (stopped at the end if this run started it), loads the
extract into a fresh database with extract date = as-of date, and runs ``dbt build`` exactly as
the DAG does (run_dbt_build: one invocation, seeds + models + tests). Then it derives a delta from
the same files (1% of the patients: a changed phone, a new booked appointment or a visit on the
day after, and a few new patients), loads it with the next day's extract date, and runs the build
again for the next as-of date: the incremental models take only the new loads. With --verify a
``dbt build --full-refresh`` follows and the marts it builds are compared with the incremental ones.

Printed per build: wall seconds, CPU seconds (dbt's process and the PostgreSQL server's; on a
busy machine wall time says how much CPU the other jobs left, CPU seconds do not), the load
average during the run, the ratio to the target, and the ten slowest nodes from run_results.json.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import threading
import time
import zlib
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / ".state" / "bench-dbt"
os.environ.setdefault("REACTIVATION_STATE_DIR", str(WORK_DIR / "state"))
sys.path.insert(0, str(ROOT / "plugins"))

import psutil  # noqa: E402
import psycopg  # noqa: E402

from reactivation.embedded_warehouse import EmbeddedWarehouse  # noqa: E402
from reactivation.transform import INCREMENTAL_CHECKED_TABLES, mart_fingerprints  # noqa: E402

FULL_TARGET_SECONDS = 600.0
DELTA_TARGET_SECONDS = 180.0
DATABASE = "bench_dbt"
SNAPSHOT = "bench_dbt_after_full"  # the warehouse right after the full build, for --delta-only


class ServerCpu:
    """CPU seconds the PostgreSQL server spent: the postmaster, its live children, and (through the
    postmaster's children_* times) every backend that finished in between."""

    def __init__(self, postmaster: psutil.Process) -> None:
        self.postmaster = postmaster

    def total(self) -> float:
        times = self.postmaster.cpu_times()
        seconds = times.user + times.system + times.children_user + times.children_system
        for child in self.postmaster.children():
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            seconds += child_times.user + child_times.system
        return seconds


class LoadAverage:
    """The 1-minute load average, sampled every few seconds while a build runs."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self._every):
                return

    def __enter__(self) -> LoadAverage:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return f"mean {sum(self.samples) / len(self.samples):.2f}, max {max(self.samples):.2f}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_build(url: str, server: ServerCpu, *, as_of: date, label: str, target: float, full_refresh: bool = False):
    """One ``dbt build`` as the DAG runs it; returns the measured figures and run_results.json."""
    from reactivation import transform

    dbt_cpu_before, server_cpu_before = _children_cpu(), server.total()
    started = time.monotonic()
    with LoadAverage() as load:
        summary = transform.run_dbt_build(url, as_of=as_of, full_refresh=full_refresh)
        target_dir = transform.get_settings().state_dir / "dbt" / "target"
    wall = time.monotonic() - started
    results = json.loads((target_dir / "run_results.json").read_text())
    kept = WORK_DIR / f"run_results-{''.join(c if c.isalnum() else '-' for c in label)}.json"
    kept.write_text(json.dumps(results))  # every node's timing, for a closer look afterwards
    figures = {
        "label": label,
        "success": summary["success"],
        "wall": wall,
        "dbt_cpu": _children_cpu() - dbt_cpu_before,
        "server_cpu": server.total() - server_cpu_before,
        "load": load.summary(),
        "target": target,
        "results": results["results"],
    }
    print_build(figures)
    return figures


def print_build(figures: dict) -> None:
    print(f"\n== {figures['label']}: {'ok' if figures['success'] else 'FAILED'}")
    print(
        f"   wall {figures['wall']:.1f} s  (target {figures['target']:.0f} s,"
        f" ratio {figures['wall'] / figures['target']:.2f})"
        f"   CPU: dbt {figures['dbt_cpu']:.1f} s, PostgreSQL {figures['server_cpu']:.1f} s"
        f"   load average {figures['load']}"
    )
    nodes = figures["results"]
    models = [node for node in nodes if node["unique_id"].startswith("model.")]
    tests = [node for node in nodes if not node["unique_id"].startswith(("model.", "seed."))]
    print(
        f"   {len(models)} models {sum(n['execution_time'] for n in models):.1f} s, "
        f"{len(tests)} tests {sum(n['execution_time'] for n in tests):.1f} s (summed over 2 threads)"
    )
    for node in sorted(nodes, key=lambda n: -n["execution_time"])[:10]:
        print(f"   {node['execution_time']:8.1f} s  {node['status']:<8} {node['unique_id']}")


# -- data ----------------------------------------------------------------------------------


def generated_extract(patients: int, locations: int, seed: int, as_of: date) -> Path:
    folder = WORK_DIR / f"extract-{patients}-{locations}-{seed}-{as_of.isoformat()}"
    if not (folder / "expected.json").exists():
        subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "reactivation"),
                "generate",
                "--patients", str(patients),
                "--locations", str(locations),
                "--seed", str(seed),
                "--as-of", as_of.isoformat(),
                "--force",
                str(folder),
            ],
            check=True,
        )  # fmt: skip
    return folder


def location_folders(extract: Path) -> list[Path]:
    return sorted(p for p in extract.iterdir() if p.is_dir() and (p / "patients.csv").exists())


def _picked(patient_id: str, share: float) -> bool:
    return zlib.crc32(patient_id.encode()) % 10_000 < share * 10_000


def derive_delta(extract: Path, share: float, day: date) -> Path:
    """The next day's extract of every location: only the rows that changed.

    For ``share`` of the patients (chosen by a hash of the id): every other one gets a new phone
    number (the last four digits changed), the rest a new booked appointment two weeks out or,
    for one in three, a completed visit on ``day`` (appointment and encounter). One new patient per
    thousand picked rows is registered. Everything else in the extract is unchanged, so only these
    rows are in the delta files.
    """
    delta = WORK_DIR / f"delta-{extract.name}-{share}"
    if (delta / "done").exists():
        return delta
    for location in location_folders(extract):
        out = delta / location.name
        out.mkdir(parents=True, exist_ok=True)
        with (location / "patients.csv").open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames
            picked = [row for row in reader if _picked(row["patient_id"], share)]
        visit_ids = {row["patient_id"] for i, row in enumerate(picked) if i % 2 == 1 and i % 3 == 0}
        booked_ids = {row["patient_id"] for i, row in enumerate(picked) if i % 2 == 1} - visit_ids
        with (out / "patients.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            for i, row in enumerate(picked):
                digits = "".join(ch for ch in row["phone"] if ch.isdigit())
                if i % 2 == 0 and len(digits) >= 10:
                    row = dict(row, phone=f"{digits[-10:-4]}{(int(digits[-4:]) + 1) % 10_000:04d}")
                    writer.writerow(row)
                if i % 1000 == 0:
                    donor = picked[(i + 7) % len(picked)]
                    new_patient = dict(row, patient_id=f"9{row['patient_id']}", household_key="", guarantor_id="")
                    writer.writerow(dict(new_patient, first_name=donor["first_name"], birth_date=donor["birth_date"]))
        with (location / "encounters.csv").open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            encounter_header = reader.fieldnames
            last_encounter = {row["patient_id"]: row for row in reader if row["patient_id"] in visit_ids}
        with (location / "appointments.csv").open(newline="", encoding="utf-8") as handle:
            appointment_header = csv.DictReader(handle).fieldnames
        stamp = day.isoformat()
        with (out / "appointments.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=appointment_header)
            writer.writeheader()
            for patient_id in sorted(booked_ids | visit_ids):
                visit = patient_id in visit_ids
                scheduled = day if visit else day + timedelta(days=14)
                writer.writerow({
                    "appointment_id": f"D{patient_id}-{stamp}",
                    "patient_id": patient_id,
                    "status": "completed" if visit else "booked",
                    "scheduled_at": f"{scheduled.isoformat()}T09:00:00",
                    "appointment_type": "Follow-up",
                    "provider_id": last_encounter.get(patient_id, {}).get("provider_id", ""),
                    "location_id": location.name,
                    "created_at": f"{stamp}T08:00:00",
                    "cancelled_at": "",
                })  # fmt: skip
        with (out / "encounters.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=encounter_header)
            writer.writeheader()
            for patient_id, row in sorted(last_encounter.items()):
                writer.writerow(dict(row, encounter_id=f"D{patient_id}-{stamp}", encounter_date=f"{stamp}T09:00:00"))
        for name in ("locations.csv",):
            (out / name).write_bytes((location / name).read_bytes())
    (delta / "done").write_text(stamp)
    return delta


def load_extract(url: str, extract: Path, extract_date: date) -> int:
    from reactivation.ingest.pipeline import load_path
    from reactivation.warehouse import analyze_raw

    rows = 0
    for location in location_folders(extract):
        summary = load_path(url, location, fmt="csv", location=location.name, extract_date=extract_date)
        rows += summary.totals["rows_loaded"]
    analyze_raw(url)
    return rows


# -- main ------------------------------------------------------------------------------------


def copy_week_of_nights(url: str, night: date, sunday: date) -> int:
    """The eligibility rows of ``night`` copied onto Monday to Saturday of ``sunday``'s week; rows copied."""
    monday = sunday - timedelta(days=6)
    copied = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for day in range(6):
            copied += conn.execute(
                "insert into intermediate.int_eligibility_daily"
                " select (%s::date) as as_of, person_id, rule_id, location_id, segment, preferred_channel,"
                " is_next_action, status, reason, suppression_reasons"
                " from intermediate.int_eligibility_daily where as_of = %s",
                (monday + timedelta(days=day), night),
            ).rowcount
        conn.execute("analyze intermediate.int_eligibility_daily")
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--locations", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 11, 1))
    parser.add_argument("--delta-share", type=float, default=0.01, help="share of patients the delta touches")
    parser.add_argument("--verify", action="store_true", help="after the delta, a --full-refresh build; compare marts")
    parser.add_argument(
        "--delta-only",
        action="store_true",
        help="start from the copy of the warehouse the last full build left (same extract, same project): "
        "only the delta is loaded and built",
    )
    parser.add_argument(
        "--delta-on-sunday",
        action="store_true",
        help="run the delta night on the Sunday after the as-of date, with the full build's eligibility night "
        "copied onto each earlier night of that week, so the weekly count reads seven nights as on a Sunday "
        "(the default delta night is a Monday, the first of its week)",
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when the output goes to a file

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    extract = generated_extract(args.patients, args.locations, args.seed, args.as_of)
    warehouse = EmbeddedWarehouse(WORK_DIR / "warehouse")
    started_here = not warehouse.is_running()
    warehouse.start()
    try:
        postmaster = psutil.Process(int((warehouse.pgdata / "postmaster.pid").read_text().split()[0]))
        server = ServerCpu(postmaster)
        with psycopg.connect(warehouse.admin_url(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{DATABASE}" with (force)')
            if args.delta_only:
                if conn.execute("select 1 from pg_database where datname = %s", (SNAPSHOT,)).fetchone() is None:
                    parser.error("--delta-only needs a full build of this bench first (no saved warehouse)")
                conn.execute(f'create database "{DATABASE}" template "{SNAPSHOT}" strategy file_copy')
            else:
                conn.execute(f'create database "{DATABASE}"')
        url = f"postgresql://postgres@127.0.0.1:{warehouse.port}/{DATABASE}"
        os.environ["WAREHOUSE_URL"] = url

        full = None
        if not args.delta_only:
            loaded_at = time.monotonic()
            rows = load_extract(url, extract, args.as_of)
            print(f"loaded {rows:,} rows of {args.patients:,} patients in {time.monotonic() - loaded_at:.0f} s")
            full = timed_build(url, server, as_of=args.as_of, label=f"full build, {args.patients:,} patients",
                               target=FULL_TARGET_SECONDS)  # fmt: skip
            with psycopg.connect(warehouse.admin_url(), autocommit=True) as conn:
                conn.execute(f'drop database if exists "{SNAPSHOT}" with (force)')
                conn.execute(f'create database "{SNAPSHOT}" template "{DATABASE}" strategy file_copy')

        next_day = args.as_of + timedelta(days=1)
        if args.delta_on_sunday:
            next_day = args.as_of + timedelta(days=7 - args.as_of.isoweekday() or 7)
            copied = copy_week_of_nights(url, args.as_of, next_day)
            print(f"\n{copied:,} eligibility rows copied onto the six nights before {next_day} (a Sunday)")
        delta = derive_delta(extract, args.delta_share, next_day)
        delta_rows = load_extract(url, delta, next_day)
        print(f"\ndelta: {delta_rows:,} rows loaded (patients, appointments, encounters) for {next_day}")
        incremental = timed_build(url, server, as_of=next_day, label=f"{args.delta_share:.0%} nightly delta",
                                  target=DELTA_TARGET_SECONDS)  # fmt: skip
        ok = (full is None or full["success"]) and incremental["success"]
        if args.verify:
            incremental_marts = mart_fingerprints(url)
            timed_build(url, server, as_of=next_day, label="full refresh after the delta (check)",
                        target=FULL_TARGET_SECONDS, full_refresh=True)  # fmt: skip
            rebuilt_marts = mart_fingerprints(url)
            for table in INCREMENTAL_CHECKED_TABLES:
                same = incremental_marts[table] == rebuilt_marts[table]
                ok = ok and same
                print(f"   {table:<36} {'same' if same else 'DIFFERENT'} ({rebuilt_marts[table][0]:,} rows)")
        full_summary = (
            "not run (--delta-only)"
            if full is None
            else (f"{full['wall']:.0f} s ({full['wall'] / FULL_TARGET_SECONDS:.2f} of target)")
        )
        print(
            f"\nsummary: full {full_summary}, "
            f"delta {incremental['wall']:.0f} s ({incremental['wall'] / DELTA_TARGET_SECONDS:.2f} of target); "
            "the DAG runs dbt as one invocation (nightly.transform)"
        )
        return 0 if ok else 1
    finally:
        if started_here:
            warehouse.stop()


if __name__ == "__main__":
    sys.exit(main())
