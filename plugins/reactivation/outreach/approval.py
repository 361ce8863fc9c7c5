"""Batch decisions: approve, reject or expire. A rejected or expired batch sends nothing."""

from __future__ import annotations

import json
from datetime import date

from reactivation.warehouse import connect

DECISIONS = {"approve": "approved", "reject": "rejected", "expire": "expired"}


class BatchDecisionError(ValueError):
    """A decision that cannot apply (unknown batch, or already decided)."""


def hitl_responder(response: dict | None) -> str | None:
    """Who answered an Airflow approval request (its result as XCom); None when nobody did (timeout default).

    Airflow records the responder as ``{"id": ..., "name": ...}`` (``HITLUser``).
    """
    user = (response or {}).get("responded_by_user")
    if isinstance(user, dict):
        return str(user.get("name") or user.get("id") or "") or None
    return str(user) if user else None


def record_hitl_response(*, as_of: str | date, response: dict | None) -> dict:
    """Apply the nightly DAG's approval request's answer to every batch of the night awaiting one.

    Approve or Reject by a person decides the batches in that person's name. No answer within the
    window (Airflow applies the default, Reject, with no responder) expires them: nobody decided.
    """
    from reactivation.dates import parse_as_of
    from reactivation.warehouse import warehouse_url

    chosen = (response or {}).get("chosen_options") or []
    who = hitl_responder(response)
    if who is None:
        decision, decided_by, note = "expire", "hitl:timeout", "no answer within the approval window"
    elif chosen == ["Approve"]:
        decision, decided_by, note = "approve", f"hitl:{who}", None
    elif chosen == ["Reject"]:
        decision, decided_by, note = "reject", f"hitl:{who}", None
    else:
        raise BatchDecisionError(f"unexpected approval answer {chosen!r}: expected Approve or Reject")
    as_of_date = parse_as_of(as_of)
    with warehouse_url(stop_embedded=False) as url:
        changed = decide_batches(url, as_of=as_of_date, decision=decision, decided_by=decided_by, note=note)
    return {"decision": decision, "decided_by": decided_by, "batches": changed}


def decide_batches(
    url: str,
    *,
    as_of: date | None = None,
    batch_ids: list[str] | None = None,
    decision: str,
    decided_by: str,
    note: str | None = None,
) -> list[str]:
    """Decide batches still awaiting approval (all of a night's, or the named ones)."""
    if decision not in DECISIONS:
        raise BatchDecisionError(f"unknown decision {decision!r}: use approve, reject or expire")
    status = DECISIONS[decision]
    with connect(url) as conn, conn.transaction():
        if batch_ids:
            found = dict(
                conn.execute("select batch_id, status from ops.batches where batch_id = any(%s)", (batch_ids,))
            )
            missing = sorted(set(batch_ids) - set(found))
            if missing:
                raise BatchDecisionError(f"no such batch: {', '.join(missing)}")
            decided = sorted(b for b, s in found.items() if s != "awaiting_approval")
            if decided:
                raise BatchDecisionError(f"already decided: {', '.join(decided)}")
            where, params = "batch_id = any(%s)", [batch_ids]
        else:
            where, params = "as_of = %s", [as_of]
        changed = [
            row[0]
            for row in conn.execute(
                f"""update ops.batches set status = %s, decided_by = %s, decided_at = now(), decision_note = %s
                    where {where} and status = 'awaiting_approval' returning batch_id""",
                [status, decided_by, note, *params],
            )
        ]
        if changed and status != "approved":
            # Nothing in these batches will ever be sent; the touches did not happen.
            conn.execute(
                """update ops.episodes e set touches_planned = greatest(e.touches_planned - 1, 0)
                   from ops.outbox o
                   where o.episode_id = e.episode_id and o.batch_id = any(%s) and o.state = 'planned'""",
                (changed,),
            )
            # The episode's touch will be planned again on a later night, under the same outreach key
            # (person, episode, touch, channel), so the cancelled row gives that key up: it keeps its
            # batch, episode, touch and reason under a retired key, ``<key>.<decision>.<batch id>``.
            conn.execute(
                """update ops.outbox
                   set state = 'cancelled', cancel_reason = %s, updated_at = now(),
                       outreach_key = outreach_key || '.' || %s || '.' || batch_id
                   where batch_id = any(%s) and state = 'planned'""",
                (f"batch {status}", status, changed),
            )
    return changed


def list_batches(url: str, as_of: date | None = None) -> list[dict]:
    with connect(url) as conn:
        rows = conn.execute(
            """select batch_id, as_of, location_id, channel, status, items, decided_by, blocked_reasons
               from ops.batches where (%s::date is null or as_of = %s) order by as_of desc, batch_id""",
            (as_of, as_of),
        ).fetchall()
    keys = ("batch_id", "as_of", "location_id", "channel", "status", "items", "decided_by", "blocked_reasons")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def show_batch(url: str, batch_id: str) -> dict:
    with connect(url) as conn:
        row = conn.execute(
            """select batch_id, as_of, location_id, channel, status, items, manifest, decided_by, decided_at,
                      decision_note, blocked_reasons
               from ops.batches where batch_id = %s""",
            (batch_id,),
        ).fetchone()
        if row is None:
            raise BatchDecisionError(f"no such batch: {batch_id}")
        states = dict(
            conn.execute("select state, count(*) from ops.outbox where batch_id = %s group by state", (batch_id,))
        )
    keys = ("batch_id", "as_of", "location_id", "channel", "status", "items", "manifest", "decided_by",
            "decided_at", "decision_note", "blocked_reasons")  # fmt: skip
    batch = dict(zip(keys, row, strict=True))
    batch["outbox_states"] = states
    return json.loads(json.dumps(batch, default=str))
