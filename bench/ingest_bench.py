"""Ingest benchmark: our loader against psql \\copy, pandas and Airflow's PostgresHook.insert_rows, in one run.

Why: the loader validates and normalises every row in Python on its way into PostgreSQL COPY; this shows
what that costs next to the fastest way to put the same files into typed tables (psql \\copy) and next to
the two ways people usually reach for (pandas, Airflow's insert_rows), and that the loader's memory does
not grow with the file.

    .venv/bin/python bench/ingest_bench.py                 # 100k patients: about 1.26M rows
    .venv/bin/python bench/ingest_bench.py --patients 20000 --small-patients 2000 --repeat 1   # a quick look

It generates (or reuses) seeded extracts under .state/bench-ingest, starts a private embedded PostgreSQL
under .state/bench-warehouse (stopped at the end if this run started it), loads the same files with each
method into a fresh database, and prints rows per second, each method's time relative to ours for the
same rows, CPU seconds (ours and the server's: the figure to trust when the machine is busy), and our
peak memory on two extract sizes. pandas and insert_rows run on the first ``--subset`` of every file
(their rows/s is then compared with ours). See bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from reactivation.embedded_warehouse import EmbeddedWarehouse, _bin  # noqa: E402
from reactivation.ingest.contract import ENTITIES  # noqa: E402
from reactivation.warehouse import ensure_schema  # noqa: E402

WORK_DIR = ROOT / ".state" / "bench-ingest"
SERVER_DIR = ROOT / ".state" / "bench-warehouse"
PSQL_TARGET = 1.5  # ours may take at most this many times psql \copy's time
PANDAS_TARGET = 10.0  # ours must be at least this many times faster than pandas
SAMPLE_SECONDS = 0.05
MB = 1024 * 1024


@dataclass
class Run:
    """One method loading one set of files."""

    method: str
    rows: int
    seconds: float
    client_cpu: float
    server_cpu: float
    peak_rss: int = 0
    baseline_rss: int = 0
    load: float = 0.0  # the 1-minute load average as the run ended
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds


@dataclass
class Extract:
    """A generated extract: its folder of CSV files and the rows they hold (headers excluded)."""

    folder: Path
    rows: int
    files: list[Path] = field(default_factory=list)


# -- measuring ---------------------------------------------------------------------------------


class Sampler:
    """Samples our process's RSS and every PostgreSQL process's CPU time while a method runs.

    Why a thread: the loader runs in this process, so its peak memory is this process's peak RSS during
    the load; and the server's CPU time (backends come and go) can only be read while they live.
    """

    def __init__(self, postmaster: psutil.Process) -> None:
        self.postmaster = postmaster
        self.me = psutil.Process()
        self.peak_rss = 0
        self.start_cpu: dict[int, float] = {}
        self.last_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _server_cpu(self) -> dict[int, float]:
        cpu = {}
        for process in [self.postmaster, *self.postmaster.children()]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            cpu[process.pid] = times.user + times.system
        return cpu

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.me.memory_info().rss)
        self.last_cpu.update(self._server_cpu())

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self._sample()

    def __enter__(self) -> Sampler:
        self.start_cpu = self._server_cpu()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def server_cpu(self) -> float:
        return sum(cpu - self.start_cpu.get(pid, 0.0) for pid, cpu in self.last_cpu.items())


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measured(method: str, rows: int, postmaster: psutil.Process, child_process: bool = False) -> Iterator[Run]:
    """Time the block; fill in wall seconds, client CPU (ours, or psql's), server CPU and our peak RSS."""
    who = resource.RUSAGE_CHILDREN if child_process else resource.RUSAGE_SELF
    run = Run(method, rows, 0.0, 0.0, 0.0, baseline_rss=psutil.Process().memory_info().rss)
    cpu_before = _cpu_seconds(who)
    with Sampler(postmaster) as sampler:
        started = time.perf_counter()
        yield run
        run.seconds = time.perf_counter() - started
    run.client_cpu = _cpu_seconds(who) - cpu_before
    run.server_cpu = sampler.server_cpu
    run.peak_rss = max(run.peak_rss, sampler.peak_rss)
    run.load = os.getloadavg()[0]


def run_sampled(command: list[str], run: Run) -> subprocess.CompletedProcess:
    """Run a child (psql) to the end, recording its peak RSS in ``run``."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
        process = psutil.Process(child.pid)
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_SECONDS / 5):
                try:
                    run.peak_rss = max(run.peak_rss, process.memory_info().rss)
                except psutil.Error:
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = child.communicate()
        stop.set()
        sampler.join()
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


# -- extracts and databases --------------------------------------------------------------------


def _count_rows(folder: Path) -> Extract:
    files = sorted(folder.glob("*.csv"))
    rows = 0
    for path in files:
        with path.open(newline="", encoding="utf-8") as handle:
            rows += sum(1 for _ in csv.reader(handle)) - 1
    return Extract(folder, rows, files)


def generated_extract(patients: int) -> Extract:
    """The seeded one-location extract for ``patients`` people, generated on first use."""
    out = WORK_DIR / f"extract-{patients}"
    if not (out / "expected.json").exists():
        shutil.rmtree(out, ignore_errors=True)
        print(f"generating {patients} patients into {out} ...", flush=True)
        subprocess.run(
            [str(Path(sys.executable).parent / "reactivation"), "generate", "--patients", str(patients),
             "--locations", "1", "--seed", "1", str(out)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return _count_rows(out / "loc_01")


def subset_extract(extract: Extract, fraction: float) -> Extract:
    """The first ``fraction`` of every file of ``extract`` (for the slow peers), written once."""
    if fraction >= 1:
        return extract
    out = WORK_DIR / f"{extract.folder.parent.name}-first-{fraction:g}"
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in extract.files:
            lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = math.ceil((len(lines) - 1) * fraction)
            (tmp / path.name).write_text("".join(lines[: keep + 1]), encoding="utf-8")
        tmp.rename(out)
    return _count_rows(out)


def extract_timezone(extract: Extract) -> str:
    """The zone our loader reads naive timestamps in (the one location's); psql is given the same."""
    with (extract.folder / "locations.csv").open(newline="", encoding="utf-8") as handle:
        return next(csv.DictReader(handle))["timezone"]


class Server:
    """The private embedded PostgreSQL, with a fresh database per run."""

    def __init__(self) -> None:
        self.warehouse = EmbeddedWarehouse(SERVER_DIR)
        self.started_here = not self.warehouse.is_running()
        self.warehouse.start()
        pid = int((self.warehouse.pgdata / "postmaster.pid").read_text().split()[0])
        self.postmaster = psutil.Process(pid)

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.warehouse.port}/{database}"

    def fresh_database(self, name: str, owner: str = "postgres") -> str:
        with psycopg.connect(self.warehouse.admin_url(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')
            conn.execute(f'create database "{name}" owner "{owner}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.warehouse.admin_url(), autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')

    def ensure_role(self, role: str) -> None:
        """A login role without superuser rights (so the loader keeps PostgreSQL's foreign-key checks)."""
        with psycopg.connect(self.warehouse.admin_url(), autocommit=True) as conn:
            if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
                conn.execute(f'create role "{role}" login nosuperuser')

    def stop(self) -> None:
        if self.started_here:
            self.warehouse.stop()


def _create_tables(url: str, extract: Extract, typed: bool) -> None:
    """One table per file with the file's columns: the raw layer's types, or all text."""
    with psycopg.connect(url, autocommit=True) as conn:
        for path in extract.files:
            entity = ENTITIES[path.stem]
            columns = ", ".join(f"{c.name} {c.sql_type if typed else 'text'}" for c in entity.columns)
            conn.execute(f"create table {path.stem} ({columns})")


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


# -- the methods -------------------------------------------------------------------------------


def run_ours(
    server: Server,
    extract: Extract,
    label: str = "ours",
    user: str = "postgres",
    export_to: Path | None = None,
    workers: int | None = None,
) -> Run:
    """reactivation.ingest.pipeline.load_path into the raw schema of a fresh database.

    It runs in a child process (this script with --child-load) so that its memory is measured from a clean
    start, whatever this process has loaded; the child times the load itself (not Python's start-up).
    ``export_to`` keeps what it loaded for the raw-table run. ``workers``: files loaded at once (None: the
    REACTIVATION_INGEST_WORKERS setting's default).
    """
    database = "bench_" + "".join(c if c.isalnum() else "_" for c in label)
    if user != "postgres":
        server.ensure_role(user)
    server.fresh_database(database, owner=user)
    url = server.url(database, user)
    ensure_schema(url)  # not timed: the schema exists before a nightly load
    command = [sys.executable, __file__, "--child-load", url, str(extract.folder)]
    if workers is not None:
        command += ["--workers", str(workers)]
    with measured(label, extract.rows, server.postmaster, child_process=True) as run:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{label} failed: {done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    totals = report["totals"]
    if totals["rows_read"] != extract.rows or totals["rejected"]:
        raise SystemExit(f"{label}: unexpected load summary {totals}")
    # The load itself, timed in the child: Python's start-up and imports are not part of a nightly load.
    run.seconds, run.client_cpu = report["seconds"], report["cpu"]
    run.peak_rss, run.baseline_rss = report["peak_rss"], report["baseline_rss"]
    run.note = f"{totals['rows_loaded']} loaded, {totals['rows_quarantined']} quarantined into raw.*"
    run.note += f", {report['workers']} worker(s)"
    if export_to is not None:
        _export_raw_tables(url, export_to)
    server.drop_database(database)
    return run


def child_load(url: str, folder: Path, workers: int | None) -> int:
    """The child side of run_ours: load, sampling this process's RSS, and report as JSON on stdout."""
    # Imports, not load work: the columnar module the loader imports on first use, and pandas, which pyarrow
    # imports on its first compute call (about 0.25 s, once per process).
    import pandas  # noqa: F401

    from reactivation.ingest import columnar  # noqa: F401
    from reactivation.ingest.pipeline import load_path
    from reactivation.settings import get_settings

    me = psutil.Process()
    baseline = me.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            peak[0] = max(peak[0], me.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cpu_before, started = _cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    workers = workers or get_settings().reactivation_ingest_workers
    summary = load_path(url, folder, fmt="csv", location="bench", workers=workers)
    seconds, cpu = time.perf_counter() - started, _cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], me.memory_info().rss)
    report = {
        "totals": summary.totals,
        "seconds": seconds,
        "cpu": cpu,
        "baseline_rss": baseline,
        "peak_rss": peak[0],
        "workers": workers,
    }
    print(json.dumps(report))
    return 0


def _copy_columns(entity_name: str) -> list[str]:
    entity = ENTITIES[entity_name]
    return ["load_id", "source_system", "location_id_loaded", "source_line"] + [
        c.name for c in entity.table_columns
    ] + ["extra"]  # fmt: skip


def _export_raw_tables(url: str, folder: Path) -> None:
    """What the loader sent to COPY, as COPY text files (for the raw-table run)."""
    folder.mkdir(parents=True, exist_ok=True)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for name in ENTITIES:
            columns = ", ".join(_copy_columns(name))
            with (
                (folder / f"{name}.copy").open("wb") as out,
                cur.copy(f"copy (select {columns} from raw.{name}) to stdout with (format text, null '')") as copy,
            ):
                for data in copy:
                    out.write(data)


def run_psql_raw(server: Server, folder: Path, rows: int) -> Run:
    """psql \\copy of the rows our loader stored, into the raw tables themselves (index included).

    Why: this is the floor for any loader writing the raw layer (load_id, source columns, the load_id
    index), so it shows how much of our time is the table rather than the Python; like ours when it may,
    it skips the per-row foreign-key check (session_replication_role = replica).
    """
    database = "bench_psql_raw"
    url = server.fresh_database(database)
    ensure_schema(url)
    commands = ["-c", "set session_replication_role = replica"]
    for name in ENTITIES:
        columns = ", ".join(_copy_columns(name))
        path = folder / f"{name}.copy"
        commands += ["-c", f"\\copy raw.{name} ({columns}) from '{path}' with (format text, null '')"]
    with measured("psql \\copy into raw.*", rows, server.postmaster, child_process=True) as run:
        done = run_sampled([str(_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *commands], run)
    if done.returncode:
        raise SystemExit(f"psql failed: {done.stderr[-2000:]}")
    run.note = "our stored rows (validated, derived columns) into the raw tables: the floor for ours"
    server.drop_database(database)
    return run


def run_psql(server: Server, extract: Extract) -> Run:
    """psql \\copy of every file into plain typed tables (the raw layer's types, no keys or indexes)."""
    database = "bench_psql"
    url = server.fresh_database(database)
    _create_tables(url, extract, typed=True)
    commands = ["-c", f"set timezone = '{extract_timezone(extract)}'"]
    for path in extract.files:
        # on_error ignore (PostgreSQL 17+): rows with an invalid date are skipped, as we quarantine them.
        columns = ", ".join(_header(path))
        options = "format csv, header true, on_error ignore"
        commands += ["-c", f"\\copy {path.stem} ({columns}) from '{path}' with ({options})"]
    with measured("psql \\copy", extract.rows, server.postmaster, child_process=True) as run:
        done = run_sampled([str(_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *commands], run)
    if done.returncode:
        raise SystemExit(f"psql failed: {done.stderr[-2000:]}")
    with psycopg.connect(url) as conn:
        loaded = sum(conn.execute(f"select count(*) from {p.stem}").fetchone()[0] for p in extract.files)
    run.note = f"{loaded} loaded, {extract.rows - loaded} skipped (on_error ignore)"
    server.drop_database(database)
    return run


def run_pandas(server: Server, extract: Extract) -> Run:
    """pandas.read_csv + DataFrame.to_sql with default settings (method=None, no chunksize), SQLAlchemy + psycopg."""
    import pandas as pd
    from sqlalchemy import create_engine

    database = "bench_pandas"
    url = server.fresh_database(database).replace("postgresql://", "postgresql+psycopg://")
    engine = create_engine(url)
    with measured("pandas to_sql", extract.rows, server.postmaster) as run:
        for path in extract.files:
            pd.read_csv(path).to_sql(path.stem, engine, index=False)
    engine.dispose()
    run.note = "tables created by pandas (inferred types: text for dates)"
    server.drop_database(database)
    return run


def run_insert_rows(server: Server, extract: Extract, commit_every: int) -> Run:
    """Airflow PostgresHook.insert_rows (psycopg 3 executemany, a commit every ``commit_every`` rows)."""
    os.environ.setdefault("AIRFLOW_HOME", str(WORK_DIR / "airflow-home"))
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")  # else a line per commit_every rows
    database = "bench_insert_rows"
    url = server.fresh_database(database)
    os.environ["AIRFLOW_CONN_BENCH_PG"] = url.replace("postgresql://", "postgres://")
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    _create_tables(url, extract, typed=False)
    hook = PostgresHook(postgres_conn_id="bench_pg")
    with measured("insert_rows", extract.rows, server.postmaster) as run:
        for path in extract.files:
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader)
                hook.insert_rows(path.stem, reader, target_fields=header, commit_every=commit_every)
    run.note = f"all-text tables, commit_every={commit_every}"
    server.drop_database(database)
    return run


# -- the report --------------------------------------------------------------------------------


def print_table(runs: list[Run], ours: Run) -> None:
    """Rows/s and time relative to ours for the same rows (ratio of rows/s, so subsets compare fairly)."""
    print()
    print(
        f"{'method':<30}{'rows':>10}{'seconds':>9}{'rows/s':>10}{'time vs ours':>14}"
        f"{'CPU s (client+server)':>24}{'peak RSS MB':>13}{'load':>6}"
    )
    for run in runs:
        ratio = ours.rows_per_second / run.rows_per_second
        cpu = f"{run.client_cpu:.1f} + {run.server_cpu:.1f}"
        rss = f"{run.peak_rss / MB:.1f}" if run.peak_rss else "-"
        print(
            f"{run.method:<30}{run.rows:>10,}{run.seconds:>9.2f}{run.rows_per_second:>10,.0f}{ratio:>13.2f}x"
            f"{cpu:>24}{rss:>13}{run.load:>6.1f}"
        )
    print()
    for run in runs:
        print(f"  {run.method}: {run.note}")
    print("  peak RSS: the loading process (ours: a fresh child; psql: the psql client; pandas and insert_rows:")
    print("  this bench process, imports included); load: the 1-minute load average as the run ended")


def print_memory(small: Run, big: Run) -> None:
    print()
    print("our peak memory (RSS of the loading process; growth over its RSS before the load):")
    for run in (small, big):
        print(
            f"  {run.rows:>10,} rows: peak {run.peak_rss / MB:6.1f} MB, "
            f"growth {(run.peak_rss - run.baseline_rss) / MB:5.1f} MB"
        )


def print_targets(ours: Run, psql: Run, raw: Run, pandas: Run) -> None:
    psql_ratio = ours.seconds / psql.seconds * psql.rows / ours.rows
    pandas_speedup = ours.rows_per_second / pandas.rows_per_second
    psql_verdict = "MET" if psql_ratio <= PSQL_TARGET else "NOT MET"
    pandas_verdict = "MET" if pandas_speedup >= PANDAS_TARGET else "NOT MET"
    print()
    print(f"{ours.method}:")
    print(f"  target: at most {PSQL_TARGET}x psql \\copy's time: {psql_ratio:.2f}x -> {psql_verdict}")
    raw_ratio = ours.seconds / raw.seconds * raw.rows / ours.rows
    print(f"  (against psql \\copy into raw.*, the same target tables: {raw_ratio:.2f}x)")
    print(f"  target: at least {PANDAS_TARGET:g}x faster than pandas: {pandas_speedup:.1f}x -> {pandas_verdict}")
    cpu_ratio = (ours.client_cpu + ours.server_cpu) / (psql.client_cpu + psql.server_cpu)
    raw_cpu_ratio = (ours.client_cpu + ours.server_cpu) / (raw.client_cpu + raw.server_cpu)
    print(f"  (CPU: {cpu_ratio:.2f}x the CPU seconds of psql \\copy, {raw_cpu_ratio:.2f}x those of psql into raw.*)")


class LoadAverage:
    """The 1-minute load average, sampled every few seconds for the whole run (other jobs share the machine)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(5):
                return

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        low, high, mean = min(self.samples), max(self.samples), sum(self.samples) / len(self.samples)
        return f"1-minute load average during the run: min {low:.1f}, mean {mean:.1f}, max {high:.1f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="people in the main extract (default 100000)")
    parser.add_argument("--small-patients", type=int, default=10_000, help="the small extract for the memory check")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours and psql; the fastest counts")
    parser.add_argument("--subset", type=float, default=0.2, help="fraction of each file for pandas and insert_rows")
    parser.add_argument("--commit-every", type=int, default=1000, help="insert_rows' commit_every (its default)")
    parser.add_argument("--skip-fk-run", action="store_true", help="skip ours as a non-superuser (FK checks on)")
    parser.add_argument("--child-load", nargs=2, metavar=("URL", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help="ours (parallel): files loaded at once (default: min(2, CPUs))")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_load:
        return child_load(args.child_load[0], Path(args.child_load[1]), args.workers)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    small, big = generated_extract(args.small_patients), generated_extract(args.patients)
    subset = subset_extract(big, args.subset)
    print(f"extracts: {small.rows:,} rows ({args.small_patients} patients), {big.rows:,} rows ({args.patients})")
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    load_average = LoadAverage()
    server = Server()
    try:
        ours_small = run_ours(server, small, "ours, small extract")
        stored = WORK_DIR / "stored-rows"
        label = f"ours (parallel, {args.workers or min(2, os.cpu_count() or 1)} workers)"
        runs_ours, runs_one, runs_psql, runs_raw = [], [], [], []
        for i in range(args.repeat):  # interleaved, so all meet the same background load
            runs_ours.append(run_ours(server, big, label, export_to=stored if i == 0 else None, workers=args.workers))
            runs_one.append(run_ours(server, big, "ours (one worker)", workers=1))
            runs_psql.append(run_psql(server, big))
            runs_raw.append(run_psql_raw(server, stored, big.rows))
        ours, one, psql, raw = (
            min(runs, key=lambda run: run.seconds) for runs in (runs_ours, runs_one, runs_psql, runs_raw)
        )
        runs = [ours, one, psql, raw]
        if not args.skip_fk_run:
            runs.append(run_ours(server, big, "ours (parallel), FK checks on", user="bench_loader"))
        pandas = run_pandas(server, subset)
        runs += [pandas, run_insert_rows(server, subset, args.commit_every)]
    finally:
        server.stop()
    print_table(runs, ours)
    print_memory(ours_small, ours)
    print_targets(ours, psql, raw, pandas)
    print_targets(one, psql, raw, pandas)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(load_average.stop())
    return 0


if __name__ == "__main__":
    sys.exit(main())
