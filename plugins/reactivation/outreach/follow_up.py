"""Between nightly runs: settle unknown sends and send deferred touches whose window has opened.

Run by the frequent ``reactivation_events`` DAG. Each batch goes through
``send_batch``, which first turns crash leftovers (``sending``) into ``unknown``,
reconciles every unknown row with the provider (never a blind resend), and then
sends the rows whose ``not_before`` has passed, re-checking every contact rule.
"""

from __future__ import annotations

from reactivation.warehouse import connect


def batches_needing_follow_up(url: str) -> list[str]:
    with connect(url) as conn:
        exists = conn.execute("select to_regclass('ops.outbox')").fetchone()[0]
        if exists is None:
            return []
        rows = conn.execute(
            """select distinct o.batch_id
               from ops.outbox o join ops.batches b using (batch_id)
               where b.status in ('sending', 'approved')
                 and (o.state in ('unknown', 'sending')
                      or (o.state in ('planned', 'deferred') and coalesce(o.not_before, now()) <= now()))
               order by 1"""
        ).fetchall()
    return [row[0] for row in rows]
