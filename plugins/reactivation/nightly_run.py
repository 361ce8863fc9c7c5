"""``reactivation run``: the whole nightly DAG through Airflow, on this machine.

Starts the embedded warehouse when no ``WAREHOUSE_URL`` is set, prepares a
project-local Airflow home (SQLite metadata, this project's dags/ and plugins/),
runs ``airflow dags test reactivation_nightly <as-of>`` under a hard time limit,
writes Airflow's own output to a log file, and prints each stage's summary.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from datetime import time as dt_time
from pathlib import Path

from reactivation.settings import PROJECT_ROOT, WAREHOUSE_CONN_ID, Settings, get_settings
from reactivation.warehouse import connect, ensure_schema, warehouse_url

DAG_ID = "reactivation_nightly"
SEND_POOL = "provider_sends"
SEND_POOL_SLOTS = 4
PROVIDER_CONNECTIONS = ("SENDGRID_DEFAULT", "SMS_DEFAULT")


def airflow_env(settings: Settings, url: str, sources: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    home = settings.airflow_home
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": url,
            "REACTIVATION_STATE_DIR": str(settings.state_dir),
            "REACTIVATION_TASK_RETRIES": "0",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT / "plugins"), os.environ.get("PYTHONPATH")])),
        }
    )
    env.pop("WAREHOUSE_URL", None)  # the connection above is the one source of truth inside Airflow
    if sources is not None:
        env["REACTIVATION_SOURCES"] = str(sources.resolve())
    return env


def _airflow() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def _run_logged(command: list[str], env: dict[str, str], log_file: Path, timeout: int) -> int:
    """Run with output appended to ``log_file``; on timeout the whole process group is killed."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            log.write(f"\nkilled after {timeout} s\n")
            return 124


def ensure_airflow_db(env: dict[str, str], log_file: Path) -> None:
    home = Path(env["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    marker = home / ".migrated"
    if marker.exists() and (home / "airflow.db").exists():
        return
    if _run_logged([_airflow(), "db", "migrate"], env, log_file, timeout=600) != 0:
        raise RuntimeError(f"airflow db migrate failed; see {log_file}")
    marker.write_text(datetime.now(UTC).isoformat())


def ensure_pool(env: dict[str, str], log_file: Path) -> None:
    """The pool that bounds concurrent provider sends (one slot per concurrent send task)."""
    command = [_airflow(), "pools", "set", SEND_POOL, str(SEND_POOL_SLOTS), "concurrent provider sends"]
    if _run_logged(command, env, log_file, timeout=300) != 0:
        raise RuntimeError(f"could not create the {SEND_POOL} pool; see {log_file}")


def stage_results(url: str, as_of: date, since: datetime) -> list[tuple[str, str, dict]]:
    with connect(url) as conn:
        rows = conn.execute(
            """select stage, status, summary from ops.stage_results
               where as_of = %s and recorded_at >= %s
               order by recorded_at""",
            (as_of, since),
        ).fetchall()
    return [(stage, status, summary) for stage, status, summary in rows]


def local_send_clock(now: datetime) -> datetime:
    """18:00 UTC on ``now``'s date: inside the 08:00-21:00 sending window of every US location (10:00 in
    Los Angeles, 13:00 in New York), so that a local run's sends do not depend on the hour it runs at."""
    return datetime.combine(now.date(), dt_time(18, 0), tzinfo=UTC)


def run_nightly(
    *, as_of: date, sources: Path | None = None, timeout: int = 3600, mark_success: str | None = None
) -> int:
    """Run the nightly DAG for ``as_of``; ``mark_success`` (a task-id regex) marks those tasks done without
    running them, as an operator's "mark success" would (Airflow's ``--mark-success-pattern``)."""
    from reactivation.console import console, print_stage_summaries

    settings = get_settings()
    log_file = settings.state_dir / "logs" / f"nightly-{as_of.isoformat()}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.write_text("")  # one log per run of this as-of date
    console.print(f"[bold]Nightly reactivation run[/] as of {as_of.isoformat()}")
    with warehouse_url(settings) as url, contextlib.ExitStack() as services:
        ensure_schema(url)
        env = airflow_env(settings, url, sources)
        if not any(env.get(f"AIRFLOW_CONN_{name}") for name in PROVIDER_CONNECTIONS):
            from reactivation.local_services import local_providers

            env.update(services.enter_context(local_providers(url)))
            console.print("providers: the local sandbox (SendGrid and SMS APIs) and the webhook receiver")
            if settings.reactivation_send_clock is None:
                # A replay against the sandbox sends as in the day, whatever the hour it runs at.
                env["REACTIVATION_SEND_CLOCK"] = local_send_clock(datetime.now(UTC)).isoformat()
                console.print(f"sends: as at {env['REACTIVATION_SEND_CLOCK']} (REACTIVATION_SEND_CLOCK)")
        ensure_airflow_db(env, log_file)
        ensure_pool(env, log_file)
        started = datetime.now(UTC)
        clock = time.monotonic()
        console.print("running the DAG through Airflow (airflow dags test) ...")
        command = [_airflow(), "dags", "test", DAG_ID, as_of.isoformat()]
        if mark_success:
            command += ["--mark-success-pattern", mark_success]
        code = _run_logged(command, env, log_file, timeout)
        seconds = time.monotonic() - clock
        services.close()  # drain provider events into the warehouse before reading the results
        results = stage_results(url, as_of, started)
        print_stage_summaries(results)
        report = next((summary for stage, _, summary in results if stage == "report"), None)
        if report:
            from reactivation.reporting.headline import format_headline

            console.print(f"[bold]Tonight[/]: {format_headline(report['headline'])}")
            console.print(f"[bold]Report[/]: {report['path']}")
    status = "succeeded" if code == 0 else ("timed out" if code == 124 else "FAILED")
    console.print(f"Airflow run {status} in {seconds:.0f} s. Airflow log: {log_file}")
    return 0 if code == 0 else 1
