"""The nightly report stage, as the DAG calls it: refresh the reporting marts, write the report, record it."""

from __future__ import annotations

import json
import logging
import time
from datetime import date

from reactivation.dates import parse_as_of
from reactivation.settings import get_settings
from reactivation.warehouse import record_stage, warehouse_url

log = logging.getLogger(__name__)

# What tonight's sends and events change: the ops staging views (rebuilt too because a view over an ops table
# that did not exist at transform time, e.g. the gate's results on a first night, is an empty placeholder), the
# outcome models over them and the reporting marts. Incremental models are nightly snapshots taken at planning
# time and stay as they are; the outreach marts are not rebuilt either (planning already read them).
REFRESH_SELECT = ("path:models/staging/ops", "path:models/intermediate/outcomes", "path:models/marts/reporting")
# Unit tests check model logic, which tonight's transform already built and tested; a data test still guards
# each rebuilt model.
REFRESH_EXCLUDE = ("config.materialized:incremental", "resource_type:unit_test")
STALE_NOTICE = (
    "The reporting marts could not be rebuilt after tonight's sends (see the report stage's dbt results): "
    "the charts may not include tonight's outcomes yet."
)


def _refresh_reporting_marts(url: str, as_of: date) -> dict | None:
    """Rebuild the outcome models and reporting marts so tonight's sends and events are in them.

    None when the project has no reporting models. Grants and row-level security are re-applied
    afterwards whatever happened, since dbt may have replaced tables before failing.
    """
    from reactivation.roles import apply_row_security
    from reactivation.transform import DBT_PROJECT_DIR, TransformError, run_dbt

    if not (DBT_PROJECT_DIR / "models" / "marts" / "reporting").is_dir():
        return None
    started = time.monotonic()
    args = ["build", "--select", *REFRESH_SELECT, "--exclude", *REFRESH_EXCLUDE]
    try:
        process, target = run_dbt(url, args, as_of=as_of, timeout=1800)
    except TransformError as err:
        log.warning("reporting marts not refreshed: %s", str(err).splitlines()[0])
        return {"success": False, "nodes": {}, "seconds": round(time.monotonic() - started, 1)}
    finally:
        apply_row_security(url)
    statuses: dict[str, int] = {}
    results_file = target / "run_results.json"
    if results_file.exists():
        for item in json.loads(results_file.read_text()).get("results", []):
            statuses[item.get("status", "unknown")] = statuses.get(item.get("status", "unknown"), 0) + 1
    return {"success": process.returncode == 0, "nodes": statuses, "seconds": round(time.monotonic() - started, 1)}


def build_report(*, as_of: str | date, dag_run_id: str, refresh_marts: bool = True) -> dict:
    """Write the night's report and record ``report`` in ``ops.stage_results`` with its path and headline.

    With ``refresh_marts`` the reporting marts are rebuilt first (one small ``dbt build``): the
    nightly transform ran before tonight's sends, so without it the charts would lag a night.
    A failed refresh does not stop the report; it is recorded as a warning.
    """
    from reactivation.reporting.render import write_report

    as_of_date = parse_as_of(as_of)
    settings = get_settings()
    with warehouse_url(settings, stop_embedded=False) as url:
        refresh = _refresh_reporting_marts(url, as_of_date) if refresh_marts else None
        stale = refresh is not None and not refresh["success"]
        path, numbers = write_report(url, as_of_date, notice=STALE_NOTICE if stale else None)
        summary = {"path": str(path), "headline": numbers, "marts_refresh": refresh}
        status = "warning" if stale else "success"
        record_stage(url, dag_run_id=dag_run_id, as_of=as_of_date, stage="report", status=status, summary=summary)
    log.info("report written: %s", path)
    return summary
