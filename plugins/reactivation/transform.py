"""Run the dbt project (one ``dbt build`` invocation) for an as-of date."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from urllib.parse import unquote, urlsplit

from reactivation.dbt_runner import TIMINGS_ENV
from reactivation.settings import PROJECT_ROOT, get_settings

log = logging.getLogger(__name__)

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# The night's as-of date, read by dbt_project/macros/as_of_date.sql.
AS_OF_ENV = "REACTIVATION_AS_OF"


class TransformError(RuntimeError):
    """dbt could not run at all (as opposed to models or tests failing)."""


# Session settings for every dbt connection (libpq reads PGOPTIONS): the data tests get what the
# models' pre-hook gives each model (dbt_project.yml): no JIT, and sorts and hashes in memory up
# to 256 MB. At 1M patients a unique test over 6M clinical events otherwise spills to disk.
DBT_SESSION_OPTIONS = "-c jit=off -c work_mem=256MB"


def dbt_env(url: str, *, threads: int | None = None) -> dict[str, str]:
    """Environment for dbt: connection parts from the warehouse URL, session settings, tracking off."""
    parts = urlsplit(url)
    env = dict(os.environ)
    env["PGOPTIONS"] = f"{DBT_SESSION_OPTIONS} {env.get('PGOPTIONS', '')}".strip()
    env.update(
        {
            "REACTIVATION_DBT_HOST": parts.hostname or "127.0.0.1",
            "REACTIVATION_DBT_PORT": str(parts.port or 5432),
            "REACTIVATION_DBT_USER": unquote(parts.username or "postgres"),
            "REACTIVATION_DBT_PASSWORD": unquote(parts.password or ""),
            "REACTIVATION_DBT_DBNAME": (parts.path or "/postgres").lstrip("/") or "postgres",
            "REACTIVATION_DBT_THREADS": str(threads or get_settings().reactivation_dbt_threads),
            "DO_NOT_TRACK": "1",
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
    )
    return env


def run_dbt(
    url: str, args: list[str], *, as_of: date | None = None, variables: dict | None = None, timeout: int = 3600
) -> tuple[subprocess.CompletedProcess, Path]:
    """Run one dbt command against the warehouse; returns the process and its target folder.

    ``variables`` are further dbt vars (the project's defaults are in dbt_project.yml)."""
    settings = get_settings()
    target = settings.state_dir / "dbt" / "target"
    log_path = settings.state_dir / "dbt" / "logs"
    command = [
        sys.executable,
        "-m",
        "reactivation.dbt_runner",
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target),
        "--log-path",
        str(log_path),
        # The file log stays at info: its debug level echoes every statement, unit-test fixtures included.
        "--log-level-file",
        "info",
    ]
    # The as-of date goes in the environment, not --vars: a changed var makes dbt parse the whole
    # project again (seconds every night); macros/as_of_date.sql reads it when a node runs.
    if variables:
        command += ["--vars", json.dumps(variables)]
    as_of_env = {AS_OF_ENV: as_of.isoformat()} if as_of is not None else {}
    try:
        process = subprocess.run(
            command,
            env={**dbt_env(url), **as_of_env, TIMINGS_ENV: str(settings.state_dir / "dbt" / "node_timings.json")},
            cwd=DBT_PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise TransformError(f"dbt {args[0]} did not finish within {timeout} s") from None
    return process, target


def run_dbt_build(
    url: str,
    *,
    as_of: date,
    select: str | None = None,
    full_refresh: bool = False,
    variables: dict | None = None,
    timeout: int = 3600,
    unit_tests: bool = False,
) -> dict:
    """``dbt build`` (seeds, models, data tests) and a count-only summary from run_results.json.

    ``full_refresh`` rebuilds incremental models from the raw layer (needed after a staging model's
    columns change); the nightly eligibility history is exempt (``full_refresh=false`` in its config).
    dbt's unit tests check the models' logic on fixed inputs, so they tell nothing new about a night's
    data: the nightly build leaves them out (as dbt advises for production runs) and ``make test`` runs
    them (``run_unit_tests``); ``unit_tests=True`` runs them here too, each before its model.
    """
    started = time.monotonic()
    args = ["build"] + (["--select", select] if select else []) + (["--full-refresh"] if full_refresh else [])
    if not unit_tests:
        args += ["--exclude-resource-type", "unit_test"]
    process, target = run_dbt(url, args, as_of=as_of, variables=variables, timeout=timeout)
    return _summary("build", process, target, started, as_of)


def run_unit_tests(url: str, *, as_of: date, select: str | None = None, timeout: int = 1800) -> dict:
    """dbt's unit tests (``dbt test --select test_type:unit``), with the same summary as a build.

    dbt reads each tested model's inputs' columns from the warehouse, so the models must exist (a
    build, even of an empty warehouse); their rows are never read.
    """
    started = time.monotonic()
    selection = "test_type:unit" + (f",{select}" if select else "")
    process, target = run_dbt(url, ["test", "--select", selection], as_of=as_of, timeout=timeout)
    return _summary("test", process, target, started, as_of)


def _summary(command: str, process: subprocess.CompletedProcess, target: Path, started: float, as_of: date) -> dict:
    """Counts by status from run_results.json; failures carry only the node name and failing-row count."""
    results_file = target / "run_results.json"
    statuses: dict[str, int] = {}
    failures: list[dict] = []
    if results_file.exists() and results_file.stat().st_mtime >= time.time() - (time.monotonic() - started) - 5:
        results = json.loads(results_file.read_text())
        for item in results.get("results", []):
            status = item.get("status", "unknown")
            statuses[status] = statuses.get(status, 0) + 1
            if status in {"error", "fail"}:
                failures.append({"node": item.get("unique_id"), "status": status, "failures": item.get("failures")})
    success = process.returncode == 0
    if not statuses and not success:
        tail = "\n".join(process.stdout.splitlines()[-15:])
        raise TransformError(f"dbt {command} failed before running any node (exit {process.returncode}):\n{tail}")
    summary = {
        "success": success,
        "as_of": as_of.isoformat(),
        "nodes": statuses,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
    }
    log.info("dbt %s success=%s nodes=%s", command, success, statuses)
    return summary


# The marts (and identity tables) a nightly incremental build must leave exactly as a full rebuild does.
INCREMENTAL_CHECKED_TABLES = (
    "intermediate.int_patients_normalised",
    "intermediate.int_clinical_events_unioned",
    "intermediate.int_patients_mapped",
    "intermediate.int_clinical_events_coded",
    "intermediate.int_care_gap_closing_events",
    "intermediate.int_person_facts",
    "intermediate.int_patient_match_pairs",
    "intermediate.int_patient_blocking_keys",
    "marts.person_sources",
    "marts.persons",
    "intermediate.int_households",
    "marts.care_gaps",
    "marts.outreach_candidates",
    "marts.outreach_suppressions",
    "intermediate.int_eligibility_weekly",
    "marts.rpt_reactivation_funnel",
)


def mart_fingerprints(url: str, tables: tuple[str, ...] = INCREMENTAL_CHECKED_TABLES) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent hash of each table (``INCREMENTAL_CHECKED_TABLES`` by default).

    ``built_at`` (when the build that wrote a row started) and the bridge's ``previous_person_id``
    (whom a record left, on the night it moved) are left out: they say what a night changed, so rows
    a night did not rewrite keep an earlier night's, and equal rows of two builds differ only there."""
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(
                f"select count(*), md5(coalesce(string_agg(row_hash, '' order by row_hash), ''))"
                f" from (select md5((to_jsonb(t) - 'built_at' - 'previous_person_id')::text) as row_hash"
                f" from {table} as t) as hashed"
            ).fetchone()
            for table in tables
        }
