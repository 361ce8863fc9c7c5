"""Between nightly runs: settle unknown sends and send deferred touches whose window has opened.

Run by the frequent ``reactivation_events`` DAG. Each batch goes through
``send_batch``, which first turns crash leftovers (``sending``) into ``unknown``,
reconciles every unknown row with the provider (never a blind resend), and then
sends the rows whose ``not_before`` has passed, re-checking every contact rule.

It also catches up on SMS delivery statuses whose callbacks the webhook receiver
missed (``backfill_sms_statuses``): events normally arrive through the receiver.
Replies the receiver missed are caught up by ``reactivation.webhooks.inbound_catch_up``.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from reactivation.warehouse import connect

log = logging.getLogger(__name__)


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


# SMS statuses that end a message's story; anything below them may still change.
_FINAL_SMS_RANK = 3  # delivered (read, undelivered, failed and canceled rank higher)
STATUS_QUIET_AFTER = timedelta(minutes=10)
STATUS_LOOKBACK = timedelta(days=3)


def backfill_sms_statuses(url: str, *, limit: int = 500, quiet_after: timedelta = STATUS_QUIET_AFTER) -> dict:
    """Fetch from the SMS provider the status of accepted messages whose callbacks never reached us.

    Twilio retries a failed status callback once, within 15 seconds (its default connection
    overrides), so a receiver outage longer than that loses delivery statuses for good; SendGrid's
    Event Webhook keeps retrying for a day, so email needs no such catch-up. A message accepted more
    than ``quiet_after`` ago (and within ``STATUS_LOOKBACK``) without a final status is looked up
    (``GET /Messages/{Sid}``) and recorded exactly as the webhook receiver records a callback: the
    same dedupe key (``<sid>:<status>``), the same forward-only status, so a late callback changes nothing.
    They are counted apart from the receiver's own deliveries, as ``catch_up.*`` in ``ops.webhook_counters``.
    """
    from reactivation.webhooks.handlers import handle_twilio_status, parse_twilio_status

    with connect(url) as conn:
        if conn.execute("select to_regclass('ops.message_status')").fetchone()[0] is None:
            return {"looked_up": 0, "recorded": 0, "unchanged": 0, "not_found": 0}
        rows = conn.execute(
            """select o.outreach_key, o.provider_message_id
               from ops.outbox o left join ops.message_status s using (outreach_key)
               where o.channel = 'sms' and o.state = 'accepted' and o.provider_message_id is not null
                 and o.updated_at < now() - %s and o.updated_at > now() - %s
                 and coalesce(s.status_rank, 0) < %s
               order by o.updated_at
               limit %s""",
            (quiet_after, STATUS_LOOKBACK, _FINAL_SMS_RANK, limit),
        ).fetchall()
    counts = {"looked_up": len(rows), "recorded": 0, "unchanged": 0, "not_found": 0}
    if not rows:
        return counts
    from twilio.base.exceptions import TwilioRestException

    from reactivation.outreach.connections import provider_connection
    from reactivation.outreach.delivery import SMS_CONN_ID
    from reactivation.outreach.providers.twilio_sms import TwilioSmsProvider

    client = TwilioSmsProvider(provider_connection(SMS_CONN_ID)).client
    for outreach_key, sid in rows:
        try:
            message = client.messages(sid).fetch()
        except TwilioRestException as err:
            if err.status == 404:
                counts["not_found"] += 1
                continue
            raise
        params = {"MessageSid": sid, "MessageStatus": str(message.status)}
        if message.error_code:
            params["ErrorCode"] = str(message.error_code)
        result = handle_twilio_status(url, parse_twilio_status(params, outreach_key), source="catch_up")
        counts["recorded" if result == "accepted" else "unchanged"] += 1
    log.info("sms statuses fetched from the provider: %s", counts)
    return counts
