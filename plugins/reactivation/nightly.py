"""The nightly run's stages, as the DAG calls them.

Each stage takes the run's as-of date (the DAG run's logical date) and run id,
does its job through the module that owns it, records a count-only summary in
``ops.stage_results`` and returns it (it becomes the task's XCom).
"""

from __future__ import annotations

import logging
from datetime import date

from reactivation.dates import parse_as_of
from reactivation.settings import get_settings
from reactivation.warehouse import analyze_raw, ensure_schema, record_stage, warehouse_url

log = logging.getLogger(__name__)


class StageFailed(RuntimeError):
    """A stage finished but its result must stop the run (the summary is recorded first)."""


def ingest(*, as_of: str | date, dag_run_id: str) -> dict:
    """Load every configured source's extracts into the raw layer."""
    from reactivation.ingest.pipeline import load_path
    from reactivation.ingest.sources import read_sources

    settings = get_settings()
    as_of_date = parse_as_of(as_of)
    sources = read_sources(settings.reactivation_sources)
    with warehouse_url(settings, stop_embedded=False) as url:
        ensure_schema(url)
        per_source = []
        for source in sources:
            summary = load_path(
                url, source.path, fmt=source.format, mapping_file=source.mapping, location=source.location
            )
            per_source.append(
                {
                    "source": source.name,
                    **summary.totals,
                    "rejected_files": [f"{f.file}: {f.message}" for f in summary.files if f.status == "rejected"],
                    "unrecognised_files": summary.unrecognised,
                }
            )
        analyze_raw(url)
        totals = {
            key: sum(s[key] for s in per_source)
            for key in (
                "files",
                "loaded",
                "skipped_duplicate",
                "rejected",
                "rows_read",
                "rows_loaded",
                "rows_quarantined",
            )
        }
        result = {"totals": totals, "sources": per_source}
        record_stage(
            url,
            dag_run_id=dag_run_id,
            as_of=as_of_date,
            stage="ingest",
            status="warning" if totals["rejected"] else "success",
            summary=result,
        )
    log.info("ingest done: %s", totals)
    return result


def transform(*, as_of: str | date, dag_run_id: str) -> dict:
    """Build the dbt project (one invocation) for the as-of date."""
    from reactivation.transform import run_dbt_build

    settings = get_settings()
    as_of_date = parse_as_of(as_of)
    with warehouse_url(settings, stop_embedded=False) as url:
        result = run_dbt_build(url, as_of=as_of_date)
        from reactivation.roles import apply_row_security

        apply_row_security(url)  # dbt replaced the tables: grants and row-level security go back on
        record_stage(
            url,
            dag_run_id=dag_run_id,
            as_of=as_of_date,
            stage="transform",
            status="success" if result["success"] else "failed",
            summary=result,
        )
    if not result["success"]:
        raise StageFailed(f"dbt build failed: {len(result['failures'])} failing node(s); see ops.stage_results")
    return result
