"""Catch up on SMS replies the webhook receiver missed: list them from the provider, handle them as the receiver would.

Twilio does not retry an incoming-message webhook that fails, so a reply that arrives while the
receiver is down (or answering 5xx) is never posted again: a STOP would leave our opt-out missing.
Twilio itself blocks later sends to that number (error 21610, for its own exact keywords only), but
the warehouse, the reports and the other channels would not know, and "please stop texting me"
(a STOP for us, not for Twilio) would not be blocked at all.

So the events DAG lists, with the official SDK, the inbound messages to our sending number(s)
over a bounded look-back (``client.messages.list(to=..., date_sent_after=...)``, then
``direction == "inbound"``: the Messages list has no direction filter), skips those already
recorded (the receiver's own dedupe key, ``<MessageSid>:received`` in ``ops.provider_events``) and
hands each missing one to the receiver's handler (``handle_twilio_inbound``, ``source="catch_up"``):
the same keywords, opt-out writes, attribution and staff queue as a webhook delivery.

Choices (see ``handle_twilio_inbound`` for the handler's side):

- **Window.** Every run looks back ``LOOKBACK`` (3 days), not "since the latest reply recorded":
  a reply that arrived during an outage is older than the replies the receiver recorded after it
  came back, so a watermark on recorded replies would skip exactly the ones missed. Replies are few,
  so listing three days every 15 minutes is cheap; anything older is not caught up.
- **Quiet period.** Replies younger than ``QUIET_AFTER`` (2 minutes;
  ``REACTIVATION_INBOUND_CATCH_UP_QUIET_SECONDS`` overrides it, for end-to-end tests) are left to
  the webhook, which Twilio posts within seconds: taking one first would turn the webhook into a
  duplicate that answers without the confirmation.
- **No late reply.** Nothing is sent for a caught-up STOP, START or HELP (``reply = 'none'``):
  there is no webhook response to carry our TwiML, Twilio already answered its keywords on the
  number itself when the reply arrived, and a STOP confirmation sent now through the API would be
  refused (21610) anyway. "Other" replies go to the staff queue with the provider's time.
- **Order.** Missing replies are handled oldest first, with the provider's send time as their
  ``received_at``, so STOP then START re-subscribes; a late STOP or START that a later STOP or START
  from the same number (already recorded) overrides changes no opt-out.
- **Counts** go to ``ops.webhook_counters`` as ``catch_up.<name>``, apart from webhook deliveries.

Logs carry counts and message SIDs only: never a number or a body.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from reactivation.warehouse import connect

log = logging.getLogger(__name__)

LOOKBACK = timedelta(days=3)
QUIET_AFTER = timedelta(minutes=2)
QUIET_AFTER_ENV = "REACTIVATION_INBOUND_CATCH_UP_QUIET_SECONDS"
MAX_MESSAGES = 5000  # per number and run; replies are listed newest first
PAGE_SIZE = 1000  # Twilio's maximum

COUNT_NAMES = (
    "listed", "already_recorded", "recorded", "duplicate", "malformed", "superseded", "truncated", "no_sms_connection",
)  # fmt: skip


def our_numbers(extra: dict[str, str]) -> list[str]:
    """The numbers patients text: ``inbound_numbers`` (comma-separated) in the SMS connection, else ``from_number``.

    A Messaging Service's sender pool is not discoverable through the Messages API; list its
    numbers in ``inbound_numbers``. With a service and no number at all, every message in the window
    is listed and those of the service are kept (heavier: outbound messages are listed too).
    """
    listed = [n.strip() for n in (extra.get("inbound_numbers") or "").split(",") if n.strip()]
    if listed:
        return sorted(set(listed))
    return [extra["from_number"]] if extra.get("from_number") else []


def _list_inbound(client: Any, extra: dict[str, str], since: datetime, until: datetime) -> tuple[list[Any], bool]:
    """Inbound messages to our numbers (or service) sent in [since, until], oldest first; and whether truncated."""
    numbers = our_numbers(extra)
    service = extra.get("messaging_service_sid")
    queries: list[dict[str, Any]] = [{"to": number} for number in numbers]
    if not queries and service:
        queries = [{}]
    if not queries:
        raise ValueError("the SMS connection names no from_number, inbound_numbers or messaging_service_sid")
    found: dict[str, Any] = {}
    truncated = False
    for query in queries:
        listed = client.messages.list(date_sent_after=since, limit=MAX_MESSAGES, page_size=PAGE_SIZE, **query)
        truncated = truncated or len(listed) >= MAX_MESSAGES
        for message in listed:
            if str(message.direction) != "inbound" or message.date_sent is None:
                continue
            if not query and message.messaging_service_sid != service:
                continue
            if since <= message.date_sent <= until:
                found[message.sid] = message
    return sorted(found.values(), key=lambda m: (m.date_sent, m.sid)), truncated


def _params(message: Any) -> dict[str, str]:
    """The incoming-message webhook's fields that the provider's Message resource also has."""
    fields = {
        "MessageSid": message.sid,
        "SmsSid": message.sid,
        "AccountSid": message.account_sid,
        "MessagingServiceSid": message.messaging_service_sid,
        "From": message.from_,
        "To": message.to,
        "Body": message.body if message.body is not None else "",
        "NumSegments": message.num_segments,
        "NumMedia": message.num_media,
        "ApiVersion": message.api_version,
    }
    return {name: str(value) for name, value in fields.items() if value is not None}


def catch_up_inbound_sms(
    url: str,
    *,
    lookback: timedelta = LOOKBACK,
    quiet_after: timedelta | None = None,
    now: datetime | None = None,
) -> dict[str, int]:
    """Record the SMS replies of the last ``lookback`` that the receiver never got; returns counts."""
    if quiet_after is None:
        raw = os.environ.get(QUIET_AFTER_ENV, "").strip()
        quiet_after = timedelta(seconds=float(raw)) if raw else QUIET_AFTER
    from reactivation.webhooks.handlers import MalformedPayload, handle_twilio_inbound, parse_twilio_inbound

    counts: Counter[str] = Counter(dict.fromkeys(COUNT_NAMES, 0))
    with connect(url) as conn:
        if conn.execute("select to_regclass('ops.inbound_messages')").fetchone()[0] is None:
            return dict(counts)

    from reactivation.outreach.connections import provider_connection
    from reactivation.outreach.delivery import SMS_CONN_ID
    from reactivation.outreach.providers.twilio_sms import TwilioSmsProvider
    from reactivation.webhooks.server import twilio_auth_token

    if not os.environ.get(f"AIRFLOW_CONN_{SMS_CONN_ID.upper()}", "").strip():
        # No SMS provider configured: nobody can have texted us. (A malformed one fails the task.)
        log.warning("inbound sms catch-up skipped: no SMS connection")
        counts["no_sms_connection"] = 1
        return dict(counts)
    provider = TwilioSmsProvider(provider_connection(SMS_CONN_ID))
    secret = twilio_auth_token()  # the receiver's: sender_key must match the one its deliveries recorded
    now = now or datetime.now(UTC)
    messages, truncated = _list_inbound(provider.client, provider.connection.extra, now - lookback, now - quiet_after)
    counts["listed"] = len(messages)
    counts["truncated"] = int(truncated)
    if truncated:
        log.warning("more than %d inbound messages in the look-back: only the newest were listed", MAX_MESSAGES)
    if not messages:
        log.info("inbound sms catch-up: %s", dict(counts))
        return dict(counts)

    with connect(url) as conn:
        rows = conn.execute(
            "select event_id from ops.provider_events where event_id = any(%s)",
            ([f"{m.sid}:received" for m in messages],),
        ).fetchall()
    recorded = {row[0].rsplit(":", 1)[0] for row in rows}
    counts["already_recorded"] = sum(1 for m in messages if m.sid in recorded)
    for message in messages:
        if message.sid in recorded:
            continue
        try:
            inbound = parse_twilio_inbound(_params(message))
        except MalformedPayload as err:
            log.warning("inbound %s not caught up: %s", message.sid, err)
            counts["malformed"] += 1
            continue
        outcome = handle_twilio_inbound(
            url, inbound, secret=secret, source="catch_up", received_at=message.date_sent.astimezone(UTC)
        )
        if outcome.result == "duplicate":  # the webhook got there in between
            counts["duplicate"] += 1
            continue
        counts["recorded"] += 1
        counts[f"keyword_{outcome.keyword}"] += 1
        counts["superseded"] += int(outcome.superseded)
    log.info("inbound sms catch-up: %s", dict(counts))
    return dict(counts)
