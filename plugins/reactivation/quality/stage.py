"""The quality gate as the nightly DAG calls it: ``run_gate(as_of=..., dag_run_id=...)``.

A block is a result, not an error: the stage records it (``ops.stage_results``
status ``blocked``, ``ops.gate_decisions``), notifies operations and returns
``blocked: true`` so the run goes on to planning, which marks the affected batches
blocked and sends nothing there. Only a gate that cannot run at all raises (the
task fails, and nothing downstream runs).
"""

from __future__ import annotations

import logging
from datetime import date

from reactivation.dates import parse_as_of
from reactivation.settings import get_settings
from reactivation.warehouse import ensure_schema, record_stage, warehouse_url

log = logging.getLogger(__name__)

STAGE = "quality_gate"


def run_gate(*, as_of: str | date, dag_run_id: str, notify: bool = True) -> dict:
    """Run the gate for the run's as-of date; returns its count-only summary (the task's XCom)."""
    from reactivation.quality.gate import run_gate_check

    settings = get_settings()
    as_of_date = parse_as_of(as_of)
    with warehouse_url(settings, stop_embedded=False) as url:
        ensure_schema(url)
        decision = run_gate_check(url, as_of=as_of_date, dag_run_id=dag_run_id, state_dir=settings.state_dir)
        summary = decision.summary()
        record_stage(
            url,
            dag_run_id=dag_run_id,
            as_of=as_of_date,
            stage=STAGE,
            status="blocked" if decision.blocked else "success",
            summary=summary,
        )
    if decision.blocked and notify:
        from reactivation.quality.notify import QualityGateNotifier

        QualityGateNotifier(gate=summary).notify({"run_id": dag_run_id})
    return summary
