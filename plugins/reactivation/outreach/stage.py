"""The outreach stages as the nightly DAG calls them: plan, decide, send, close."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date

from reactivation.dates import parse_as_of
from reactivation.outreach.config import load_config
from reactivation.settings import get_settings
from reactivation.warehouse import connect, ensure_schema, record_stage, warehouse_url

log = logging.getLogger(__name__)


def _gate_blocks(url: str, dag_run_id: str) -> tuple[list[str], dict[str, list[str]]]:
    """The quality gate's decision for this run: (global reasons, reasons per location)."""
    with connect(url) as conn:
        exists = conn.execute("select to_regclass('ops.gate_decisions')").fetchone()[0]
        if exists is None:
            return [], {}
    from reactivation.quality.gate import blocked_scope

    global_blocked, per_location = blocked_scope(url, dag_run_id)
    if global_blocked:
        reasons = per_location.get("__global__") or ["the quality gate failed for all locations"]
        return list(reasons), {}
    return [], {loc: list(reasons) for loc, reasons in per_location.items() if loc != "__global__"}


def plan(*, as_of: str | date, dag_run_id: str) -> dict:
    from reactivation.outreach.planning import plan_outreach

    as_of_date = parse_as_of(as_of)
    with warehouse_url(get_settings(), stop_embedded=False) as url:
        ensure_schema(url)
        blocked_global, blocked_locations = _gate_blocks(url, dag_run_id)
        summary = plan_outreach(
            url,
            as_of=as_of_date,
            dag_run_id=dag_run_id,
            config=load_config(),
            blocked_global=blocked_global,
            blocked_locations=blocked_locations,
        )
        batches = batches_by_status(url, as_of_date)
        result = {
            **summary.as_dict(),
            "awaiting_approval": batches.get("awaiting_approval", []),
            "approved": batches.get("approved", []),
            "blocked": batches.get("blocked", []),
        }
        status = "blocked" if batches.get("blocked") else "success"
        record_stage(url, dag_run_id=dag_run_id, as_of=as_of_date, stage="plan", status=status, summary=result)
    return result


def batches_by_status(url: str, as_of: date) -> dict[str, list[str]]:
    with connect(url) as conn:
        rows = conn.execute("select status, batch_id from ops.batches where as_of = %s order by batch_id", (as_of,))
        grouped: dict[str, list[str]] = {}
        for status, batch_id in rows:
            grouped.setdefault(status, []).append(batch_id)
    return grouped


def decide(*, as_of: str | date, decision: str, decided_by: str, note: str | None = None) -> dict:
    """Apply a human decision to every batch of the night still awaiting one."""
    from reactivation.outreach.approval import decide_batches

    as_of_date = parse_as_of(as_of)
    with warehouse_url(get_settings(), stop_embedded=False) as url:
        changed = decide_batches(url, as_of=as_of_date, decision=decision, decided_by=decided_by, note=note)
    return {"decision": decision, "batches": changed}


def sendable(*, as_of: str | date) -> list[str]:
    with warehouse_url(get_settings(), stop_embedded=False) as url:
        batches = batches_by_status(url, parse_as_of(as_of))
    return batches.get("approved", []) + batches.get("sending", [])


def send(*, batch_id: str) -> dict:
    from reactivation.outreach.delivery import send_one_batch

    with warehouse_url(get_settings(), stop_embedded=False) as url:
        return send_one_batch(url, batch_id)


def close(*, as_of: str | date, dag_run_id: str) -> dict:
    """End of the night: undecided batches expire and send nothing, call lists are exported, counts recorded."""
    from reactivation.outreach.approval import decide_batches
    from reactivation.outreach.providers.call_list import export_call_lists

    as_of_date = parse_as_of(as_of)
    settings = get_settings()
    with warehouse_url(settings, stop_embedded=False) as url:
        expired = decide_batches(url, as_of=as_of_date, decision="expire", decided_by="nightly-close")
        exports = export_call_lists(url, as_of_date, settings.state_dir / "exports" / "call_lists")
        with connect(url) as conn:
            outbox = Counter(
                dict(
                    conn.execute(
                        """select o.state, count(*) from ops.outbox o join ops.batches b using (batch_id)
                           where b.as_of = %s group by o.state""",
                        (as_of_date,),
                    ).fetchall()
                )
            )
            by_channel = dict(
                conn.execute(
                    """select o.channel, count(*) from ops.outbox o join ops.batches b using (batch_id)
                       where b.as_of = %s and o.state = 'accepted' group by o.channel""",
                    (as_of_date,),
                ).fetchall()
            )
        result = {
            "outbox": dict(outbox),
            "accepted_by_channel": by_channel,
            "expired_batches": expired,
            "call_lists": {loc: str(path) for loc, path in exports.items()},
            "batches": {k: len(v) for k, v in batches_by_status(url, as_of_date).items()},
        }
        with connect(url) as conn:
            unsent = conn.execute(
                """select count(*) from ops.outbox o join ops.batches b using (batch_id)
                   where b.as_of = %s and b.status in ('approved', 'sending') and o.state = 'planned'""",
                (as_of_date,),
            ).fetchone()[0]
        result["unsent_after_send"] = unsent
        status = "failed" if unsent else "success"
        record_stage(url, dag_run_id=dag_run_id, as_of=as_of_date, stage="send", status=status, summary=result)
    if unsent:
        # Approved touches that no send task moved forward: a send task failed. Fail the run, loudly.
        raise RuntimeError(f"{unsent} approved touch(es) were not sent; see the send tasks' logs")
    return result
