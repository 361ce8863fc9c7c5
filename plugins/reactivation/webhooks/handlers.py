"""What a verified webhook changes in the warehouse: one transaction per request, nothing else.

Signature and timestamp checks happen in ``app.py`` before anything here runs; these functions
parse, validate and write. Parsing happens before the transaction opens, so a malformed
payload writes nothing. Inside the transaction:

- every event is appended to ``ops.provider_events`` once (``on conflict (event_id) do nothing``
  is the dedupe: a repeated delivery finds its row and changes nothing else);
- ``ops.message_status`` only moves to a higher rank, so a late ``processed`` or ``sent`` never
  undoes ``delivered``, and terminal outcomes (rank 9) stay;
- opt-outs (STOP replies, email unsubscribes and spam reports) are inserted into ``ops.opt_outs``,
  which the send path re-reads before every send, and committed before the provider gets its answer.

Logs carry counts and surrogate ids only; bodies, phone numbers and email addresses never reach a
logger. Reply texts are stored only for "other" replies, in ``ops.staff_queue``, because staff
must read them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from twilio.twiml.messaging_response import MessagingResponse

from reactivation.warehouse import connect
from reactivation.webhooks.keywords import Classification, classify, normalise

log = logging.getLogger(__name__)

COUNTER_NAMES = (
    "accepted",
    "duplicate",
    "bad_signature",
    "stale_timestamp",
    "malformed",
    "unknown_message",
    "unknown_sender",
    "opt_out",
    "opt_in",
    "staff_queued",
)
# Where an event came from. The receiver's own deliveries are counted under the plain names above;
# events the events DAG fetched from the provider because the receiver missed them ("catch_up":
# SMS statuses and inbound SMS) are counted as "catch_up.<name>", so /metrics tells a healthy
# receiver from one whose work is being done late by the catch-up.
SOURCES = ("webhook", "catch_up")
CATCH_UP_COUNTER_NAMES = tuple(
    f"catch_up.{name}"
    for name in ("accepted", "duplicate", "unknown_message", "unknown_sender", "opt_out", "opt_in", "staff_queued",
                 "superseded")
)  # fmt: skip

# Message status ranks: a status row only ever moves to a higher rank. 9 = terminal.
SENDGRID_RANKS = {
    "processed": 1,
    "deferred": 2,
    "delivered": 3,
    "open": 4,
    "click": 5,
    "bounce": 9,
    "blocked": 9,
    "dropped": 9,
    "spamreport": 9,
    "unsubscribe": 9,
    "group_unsubscribe": 9,
}
TWILIO_RANKS = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 1,
    "sent": 2,
    "delivered": 3,
    "read": 4,
    "undelivered": 9,
    "failed": 9,
    "canceled": 9,
}
# SendGrid events that mean "no more email" for the person the message went to.
EMAIL_OPT_OUT_EVENTS = frozenset({"unsubscribe", "group_unsubscribe", "spamreport"})

MAX_SENDGRID_EVENTS = 10_000
REPEAT_STOP_WINDOW = "24 hours"
TRANSACTION_TRIES = 3

# Fields that are safe to digest (no address, phone, IP, user agent, URL or free text).
_SENDGRID_DIGEST_FIELDS = (
    "event",
    "sg_event_id",
    "sg_message_id",
    "timestamp",
    "outreach_id",
    "category",
    "asm_group_id",
    "type",
    "status",
    "attempt",
    "tls",
    "bounce_classification",
    "template_id",
    "smtp-id",
)
_TWILIO_DIGEST_FIELDS = (
    "MessageSid",
    "SmsSid",
    "MessageStatus",
    "SmsStatus",
    "AccountSid",
    "MessagingServiceSid",
    "ErrorCode",
    "ApiVersion",
    "NumSegments",
    "NumMedia",
    "OptOutType",
)

_TWILIO_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
_TWILIO_STATUS = re.compile(r"^[a-z_]{1,32}$")
_ERROR_CODE = re.compile(r"^\d{1,8}$")
_SMTP_STATUS = re.compile(r"^\d\.\d{1,3}\.\d{1,3}$")
_OUTREACH_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_SENDER = re.compile(r"^\+?[A-Za-z0-9 ]{1,32}$")


class MalformedPayload(ValueError):
    """The payload is signed but not what the provider sends; the message names the field, never a value."""


def _digest(fields: Mapping[str, Any], names: tuple[str, ...]) -> str:
    """sha256 of the non-PHI fields: proves which event was processed without keeping an address or a number."""
    kept = {name: fields[name] for name in names if name in fields}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


# --- counters ------------------------------------------------------------------------------------


def bump_counters(conn: psycopg.Connection, counts: Mapping[str, int], source: str = "webhook") -> None:
    """Add to the running totals, in name order so concurrent requests lock the rows in one order.

    Counts of a ``source`` other than the receiver's own webhook deliveries go under ``<source>.<name>``.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown event source {source!r}")
    prefix = "" if source == "webhook" else f"{source}."
    items = sorted((prefix + name, value) for name, value in counts.items() if value)
    if not items:
        return
    conn.execute(
        """insert into ops.webhook_counters (name, value)
           select name, value from unnest(%s::text[], %s::bigint[]) as t (name, value) order by name
           on conflict (name) do update
           set value = webhook_counters.value + excluded.value, updated_at = now()""",
        ([n for n, _ in items], [v for _, v in items]),
    )


def record_rejection(url: str, name: str) -> None:
    """Count a rejected request in its own transaction; a warehouse outage must not turn a 403 into a 500."""
    try:
        with connect(url, connect_timeout=5) as conn:
            bump_counters(conn, {name: 1})
    except (psycopg.Error, OSError) as err:
        log.warning("could not count a rejected webhook (%s): %s", name, type(err).__name__)


def read_counters(url: str) -> dict[str, int]:
    """Every known counter (zero when never bumped) plus any other name found in the table."""
    with connect(url, connect_timeout=5) as conn:
        rows = conn.execute("select name, value from ops.webhook_counters").fetchall()
    counts = dict.fromkeys((*COUNTER_NAMES, *CATCH_UP_COUNTER_NAMES), 0)
    counts.update({name: int(value) for name, value in rows})
    return counts


T = TypeVar("T")


def in_transaction(url: str, work: Callable[[psycopg.Connection], T]) -> T:
    """Run ``work`` in one transaction, retrying a deadlock or serialization failure (it then did nothing)."""
    for attempt in range(1, TRANSACTION_TRIES + 1):
        try:
            with connect(url, connect_timeout=10) as conn:
                return work(conn)
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
            if attempt == TRANSACTION_TRIES:
                raise
            log.info("webhook transaction retried after a lock conflict (attempt %d)", attempt)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


# --- shared writes -------------------------------------------------------------------------------


def _record_opt(conn: psycopg.Connection, people: list[str], *, channel: str, status: str, source: str) -> list[str]:
    """Insert ``status`` for each person whose latest entry for ``channel`` differs; returns who changed.

    ``clock_timestamp()`` rather than the transaction's ``now()``: the latest row wins in the send
    path, and a STOP and a START from the same number must be ordered as they were processed.
    """
    if not people:
        return []
    rows = conn.execute(
        """insert into ops.opt_outs (person_id, channel, status, source, recorded_at)
           select person_id, %(channel)s, %(status)s, %(source)s, clock_timestamp()
           from unnest(%(people)s::text[]) as p (person_id)
           where coalesce((select o.status from ops.opt_outs o
                           where o.person_id = p.person_id and o.channel = %(channel)s
                           order by o.recorded_at desc limit 1), '') <> %(status)s
           order by person_id
           returning person_id""",
        {"people": sorted(set(people)), "channel": channel, "status": status, "source": source},
    ).fetchall()
    return [r[0] for r in rows]


def _upsert_status(
    conn: psycopg.Connection,
    rows: list[tuple[str, str, str | None, str, int, str | None, datetime | None]],
) -> None:
    """Forward-only: a row changes only when the new status has a higher rank."""
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """insert into ops.message_status (outreach_key, provider, provider_message_id, status, status_rank,
                   error_code, occurred_at)
               values (%s, %s, %s, %s, %s, %s, %s)
               on conflict (outreach_key) do update
               set provider_message_id = coalesce(excluded.provider_message_id, message_status.provider_message_id),
                   status = excluded.status, status_rank = excluded.status_rank, error_code = excluded.error_code,
                   occurred_at = excluded.occurred_at, updated_at = now()
               where excluded.status_rank > message_status.status_rank""",
            sorted(rows),
        )


def _known_outreach(conn: psycopg.Connection, keys: set[str]) -> dict[str, str]:
    """outreach_key → person_id for the keys that are in the outbox."""
    if not keys:
        return {}
    rows = conn.execute(
        "select outreach_key, person_id from ops.outbox where outreach_key = any(%s)", (sorted(keys),)
    ).fetchall()
    return dict(rows)


# --- SendGrid Event Webhook ----------------------------------------------------------------------


@dataclass(frozen=True)
class SendGridEvent:
    """The non-PHI part of one Event Webhook event."""

    event_id: str
    event_type: str
    provider_message_id: str | None
    outreach_key: str | None
    occurred_at: datetime
    error_code: str | None
    digest: str


def _optional_text(item: Mapping[str, Any], name: str, index: int, limit: int = 200) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > limit:
        raise MalformedPayload(f"event {index}: {name} must be a non-empty string of at most {limit} characters")
    return value


def _required_text(item: Mapping[str, Any], name: str, index: int, limit: int = 200) -> str:
    value = _optional_text(item, name, index, limit)
    if value is None:
        raise MalformedPayload(f"event {index}: {name} is missing")
    return value


def parse_sendgrid_events(body: bytes) -> list[SendGridEvent]:
    """Validate a whole Event Webhook batch before anything is written: one bad event rejects the batch."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("the body is not UTF-8 JSON") from None
    if not isinstance(data, list):
        raise MalformedPayload("the body must be a JSON array of events")
    if len(data) > MAX_SENDGRID_EVENTS:
        raise MalformedPayload(f"more than {MAX_SENDGRID_EVENTS} events in one post")
    events: list[SendGridEvent] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise MalformedPayload(f"event {index} is not an object")
        event_id = _required_text(item, "sg_event_id", index)
        event_type = _required_text(item, "event", index, limit=64)
        message_id = _optional_text(item, "sg_message_id", index, limit=500)
        outreach_key = _optional_text(item, "outreach_id", index)
        timestamp = item.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not 0 < timestamp < 1e11:
            raise MalformedPayload(f"event {index}: timestamp must be Unix seconds")
        status = item.get("status")
        error_code = status if isinstance(status, str) and _SMTP_STATUS.match(status) else None
        events.append(
            SendGridEvent(
                event_id=event_id,
                event_type=event_type.lower(),
                provider_message_id=message_id,
                outreach_key=outreach_key,
                occurred_at=datetime.fromtimestamp(timestamp, UTC),
                error_code=error_code,
                digest=_digest(item, _SENDGRID_DIGEST_FIELDS),
            )
        )
    return events


@dataclass
class SendGridOutcome:
    """Counts for one batch: logged, counted and returned to the caller (no ids of people in it)."""

    accepted: int = 0
    duplicate: int = 0
    unknown_message: int = 0
    opted_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "unknown_message": self.unknown_message,
            "opted_out": self.opted_out,
        }


def handle_sendgrid_events(url: str, events: list[SendGridEvent]) -> SendGridOutcome:
    """Record a verified batch: events once, status forward-only, unsubscribes and spam reports as opt-outs."""

    def work(conn: psycopg.Connection) -> SendGridOutcome:
        outcome = SendGridOutcome()
        unique = {e.event_id: e for e in sorted(events, key=lambda e: e.event_id)}
        outcome.duplicate = len(events) - len(unique)
        batch = list(unique.values())
        inserted: set[str] = set()
        if batch:
            rows = conn.execute(
                """insert into ops.provider_events (event_id, provider, event_type, provider_message_id, outreach_key,
                       error_code, occurred_at, payload_digest)
                   select event_id, 'sendgrid', event_type, provider_message_id, outreach_key, error_code, occurred_at,
                          payload_digest
                   from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[],
                               %s::text[])
                        as t (event_id, event_type, provider_message_id, outreach_key, error_code, occurred_at,
                              payload_digest)
                   order by event_id
                   on conflict (event_id) do nothing
                   returning event_id""",
                (
                    [e.event_id for e in batch],
                    [e.event_type for e in batch],
                    [e.provider_message_id for e in batch],
                    [e.outreach_key for e in batch],
                    [e.error_code for e in batch],
                    [e.occurred_at for e in batch],
                    [e.digest for e in batch],
                ),
            ).fetchall()
            inserted = {r[0] for r in rows}
        new = [e for e in batch if e.event_id in inserted]
        outcome.accepted = len(new)
        outcome.duplicate += len(batch) - len(new)
        known = _known_outreach(conn, {e.outreach_key for e in new if e.outreach_key})
        outcome.unknown_message = sum(1 for e in new if e.outreach_key not in known)

        # Only events about our own messages change status or consent; the rest stay in the log.
        ours = [(e.outreach_key, e) for e in new if e.outreach_key is not None and e.outreach_key in known]
        best: dict[str, SendGridEvent] = {}
        for key, event in ours:
            rank = SENDGRID_RANKS.get(event.event_type)
            current = best.get(key)
            if rank is not None and (current is None or rank > SENDGRID_RANKS[current.event_type]):
                best[key] = event
        _upsert_status(
            conn,
            [
                (key, "sendgrid", e.provider_message_id, e.event_type, SENDGRID_RANKS[e.event_type], e.error_code,
                 e.occurred_at)
                for key, e in best.items()
            ],
        )  # fmt: skip

        by_source: dict[str, set[str]] = {}
        for key, event in ours:
            if event.event_type in EMAIL_OPT_OUT_EVENTS:
                by_source.setdefault(f"sendgrid_{event.event_type}", set()).add(known[key])
        for source in sorted(by_source):
            outcome.opted_out += len(
                _record_opt(conn, sorted(by_source[source]), channel="email", status="opt_out", source=source)
            )
        bump_counters(
            conn,
            {
                "accepted": outcome.accepted,
                "duplicate": outcome.duplicate,
                "unknown_message": outcome.unknown_message,
                "opt_out": outcome.opted_out,
            },
        )
        return outcome

    outcome = in_transaction(url, work)
    log.info("sendgrid events: %s", outcome.as_dict())
    return outcome


# --- Twilio status callbacks ---------------------------------------------------------------------


def _sid(params: Mapping[str, str]) -> str:
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if not _TWILIO_SID.match(sid):
        raise MalformedPayload("MessageSid is missing or not a Twilio message SID")
    return sid


@dataclass(frozen=True)
class TwilioStatus:
    """The non-PHI part of one status callback."""

    sid: str
    status: str
    error_code: str | None
    outreach_key: str | None
    digest: str


def parse_twilio_status(params: Mapping[str, str], outreach_key: str | None) -> TwilioStatus:
    """Validate a status callback; ``outreach_key`` is the query parameter our StatusCallback URL carries."""
    sid = _sid(params)
    status = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not _TWILIO_STATUS.match(status):
        raise MalformedPayload("MessageStatus is missing or not a status word")
    error_code = params.get("ErrorCode") or None
    if error_code is not None and not _ERROR_CODE.match(error_code):
        raise MalformedPayload("ErrorCode must be a number")
    if outreach_key is not None and not _OUTREACH_KEY.match(outreach_key):
        raise MalformedPayload("the outreach_key query parameter is not an outreach key")
    digest = _digest({**params, "outreach_key": outreach_key}, (*_TWILIO_DIGEST_FIELDS, "outreach_key"))
    return TwilioStatus(sid, status, error_code, outreach_key, digest)


def handle_twilio_status(url: str, event: TwilioStatus, *, source: str = "webhook") -> str:
    """Record one status callback; returns "accepted", "duplicate" or "unknown_message".

    ``source`` is "catch_up" when the status was fetched from the provider instead (counted apart).
    """

    def work(conn: psycopg.Connection) -> str:
        row = conn.execute(
            """insert into ops.provider_events (event_id, provider, event_type, provider_message_id, outreach_key,
                   error_code, occurred_at, payload_digest)
               values (%s, 'twilio', %s, %s, %s, %s, null, %s)
               on conflict (event_id) do nothing returning id""",
            (f"{event.sid}:{event.status}", event.status, event.sid, event.outreach_key, event.error_code,
             event.digest),
        ).fetchone()  # fmt: skip
        if row is None:
            bump_counters(conn, {"duplicate": 1}, source)
            return "duplicate"
        key = event.outreach_key if event.outreach_key and _known_outreach(conn, {event.outreach_key}) else None
        if key is None:
            found = conn.execute(
                "select outreach_key from ops.outbox where provider_message_id = %s", (event.sid,)
            ).fetchone()
            key = found[0] if found else None
        if key is None:
            bump_counters(conn, {"accepted": 1, "unknown_message": 1}, source)
            return "unknown_message"
        rank = TWILIO_RANKS.get(event.status)
        if rank is not None:
            _upsert_status(conn, [(key, "twilio", event.sid, event.status, rank, event.error_code, None)])
        bump_counters(conn, {"accepted": 1}, source)
        return "accepted"

    result = in_transaction(url, work)
    log.info("twilio status %s for %s: %s (%s)", source, event.sid, result, event.status)
    return result


# --- Twilio inbound messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class InboundSms:
    """A verified reply; ``sender`` and ``body`` are used to act on it and never written except as noted."""

    sid: str
    sender: str
    body: str
    digest: str


def parse_twilio_inbound(params: Mapping[str, str]) -> InboundSms:
    """Validate an incoming-message webhook (the sender and body are used, never stored or logged)."""
    sid = _sid(params)
    sender = params.get("From") or ""
    if not _SENDER.match(sender):
        raise MalformedPayload("From is missing or not a phone number or sender id")
    body = params.get("Body")
    if body is None:
        raise MalformedPayload("Body is missing")
    if len(body) > 10_000:
        raise MalformedPayload("Body is longer than any SMS")
    return InboundSms(sid, sender, body, _digest(params, _TWILIO_DIGEST_FIELDS))


@dataclass(frozen=True)
class Candidate:
    """A person whose phone is the sender's, with the location of the last text we sent them (if any)."""

    person_id: str
    home_location_id: str | None
    language: str | None
    last_sms_location_id: str | None


@dataclass
class InboundOutcome:
    """What happened to one reply, and the TwiML to answer with."""

    result: str  # accepted | duplicate
    keyword: str | None = None
    reply: str = "none"
    people: int = 0
    twiml: str = ""
    superseded: bool = False  # a late STOP/START that a later STOP/START from the same number overrides


def sender_key(secret: str, sender: str) -> str:
    """A keyed digest of the sender's number: recognises a repeat without storing or exposing the number."""
    return hmac.new(secret.encode(), sender.encode(), hashlib.sha256).hexdigest()[:32]


def _exists(conn: psycopg.Connection, table: str) -> bool:
    """Whether ``table`` exists: before the first dbt build there are no marts, and replies still count."""
    row = conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()
    return bool(row and row[0])


def _candidates(conn: psycopg.Connection, sender: str) -> list[Candidate]:
    """Everyone whose number this is, the one we texted most recently first."""
    if not _exists(conn, "marts.persons"):
        return []
    rows = conn.execute(
        """select p.person_id, p.home_location_id, p.language, last_sms.location_id
           from marts.persons p
           left join lateral (
               select o.location_id, o.updated_at from ops.outbox o
               where o.person_id = p.person_id and o.channel = 'sms' and o.state = 'accepted'
               order by o.updated_at desc limit 1
           ) last_sms on true
           where p.phone_e164 = %s
           order by last_sms.updated_at desc nulls last, p.person_id""",
        (sender,),
    ).fetchall()
    return [Candidate(*row) for row in rows]


def _attribute(candidates: list[Candidate]) -> tuple[Candidate | None, str | None]:
    """The person a reply most likely comes from and the location it belongs to.

    The person we last texted at that number, else the only person with it; the location of that
    last text, else the person's home location, else the home location all sharers have in common.
    """
    texted = bool(candidates) and candidates[0].last_sms_location_id is not None
    primary = candidates[0] if texted or len(candidates) == 1 else None
    if primary is not None:
        return primary, primary.last_sms_location_id or primary.home_location_id
    homes = {c.home_location_id for c in candidates}
    return None, (homes.pop() if len(homes) == 1 else None)


def _practice(conn: psycopg.Connection, location_id: str | None) -> tuple[str | None, str | None]:
    """(name, phone) of the practice at ``location_id`` from the latest extract, or (None, None)."""
    if location_id is None or not _exists(conn, "staging.stg_emr__locations"):
        return None, None
    row = conn.execute(
        """select name, phone_e164 from staging.stg_emr__locations where location_id = %s
           order by extract_date desc nulls last limit 1""",
        (location_id,),
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def display_phone(e164: str | None) -> str | None:
    """+14025550100 → (402) 555-0100 for North American numbers; other numbers as they are."""
    if e164 and re.fullmatch(r"\+1\d{10}", e164):
        return f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    return e164


_SPANISH_WORDS = frozenset({"no mas", "nomas", "alto", "baja", "darse de baja", "ayuda"})

REPLIES = {
    ("stop", "en"): "{practice}You're unsubscribed and will get no more texts from us. Reply START to resubscribe.",
    ("stop", "es"): "{practice}Se ha dado de baja y no recibirá más mensajes nuestros. Responda START para volver.",
    ("start", "en"): "{practice}You're resubscribed to our texts. Reply STOP to opt out, HELP for help.",
    ("start", "es"): "{practice}Se ha vuelto a suscribir a nuestros mensajes. Responda STOP para darse de baja.",
    ("help", "en"): "{practice}For help, call {phone}. Reply STOP to opt out.",
    ("help", "es"): "{practice}Para ayuda, llame al {phone}. Responda STOP para darse de baja.",
}
GENERIC_PHONE = {"en": "the practice that sent you our message", "es": "la clínica que le envió nuestro mensaje"}


def reply_text(keyword: str, language: str, practice_name: str | None, practice_phone: str | None) -> str:
    """The confirmation or help text: the practice's name and number when known, a generic line otherwise."""
    language = language if (keyword, language) in REPLIES else "en"
    prefix = f"{practice_name}: " if practice_name else ""
    phone = display_phone(practice_phone) or GENERIC_PHONE[language]
    return REPLIES[(keyword, language)].format(practice=prefix, phone=phone)


def twiml(message: str | None) -> str:
    """TwiML answer: one <Message>, or an empty <Response/> (no reply is sent)."""
    response = MessagingResponse()
    if message:
        response.message(message)
    return str(response)


def handle_twilio_inbound(
    url: str,
    message: InboundSms,
    *,
    secret: str,
    source: str = "webhook",
    received_at: datetime | None = None,
) -> InboundOutcome:
    """Record a reply and act on it: STOP/START change the opt-out at once, HELP answers, the rest goes to staff.

    ``source="catch_up"`` is a reply the receiver missed, fetched from the provider later
    (``reactivation.webhooks.inbound_catch_up``), with ``received_at`` the provider's time for it.
    It is recorded and acted on exactly as a webhook delivery (same dedupe key, same keywords,
    same opt-out writes, same staff queue) with three differences: no reply is sent (there is no
    webhook response to carry TwiML, and the provider already answered the keyword itself), so the
    row says ``reply = 'none'``; a STOP or START that a *later* STOP or START from the same number,
    already recorded, overrides changes no opt-out (``superseded``); counts go under ``catch_up.*``.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown event source {source!r}")
    late = source != "webhook"
    classification: Classification = classify(message.body)
    key = sender_key(secret, message.sender)

    def work(conn: psycopg.Connection) -> InboundOutcome:
        # One number's replies are handled one at a time, so "already confirmed" is decided in order.
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"webhooks.sender:{key}",))
        row = conn.execute(
            """insert into ops.provider_events (event_id, provider, event_type, provider_message_id, outreach_key,
                   error_code, occurred_at, payload_digest)
               values (%s, 'twilio', 'inbound', %s, null, null, null, %s)
               on conflict (event_id) do nothing returning id""",
            (f"{message.sid}:received", message.sid, message.digest),
        ).fetchone()
        if row is None:
            bump_counters(conn, {"duplicate": 1}, source)
            return InboundOutcome("duplicate", twiml=twiml(None))
        candidates = _candidates(conn, message.sender)
        people = sorted(c.person_id for c in candidates)
        primary, location_id = _attribute(candidates)
        words = classification.keyword
        language = (
            "es"
            if (primary and primary.language == "es")
            or (words != "other" and normalise(message.body) in _SPANISH_WORDS)
            else "en"
        )
        counts: Counter[str] = Counter(accepted=1)
        if not candidates:
            counts["unknown_sender"] += 1
        reply_kind, text = "none", None
        superseded = False
        if late and words in ("stop", "start"):
            later = conn.execute(
                """select 1 from ops.inbound_messages
                   where sender_key = %s and keyword in ('stop', 'start') and received_at > %s limit 1""",
                (key, received_at or datetime.now(UTC)),
            ).fetchone()
            superseded = later is not None
        if superseded:
            counts["superseded"] += 1
        elif words == "stop":
            counts["opt_out"] += len(_record_opt(conn, people, channel="sms", status="opt_out", source="sms_stop"))
            last = None
            if not late:
                last = conn.execute(
                    f"""select keyword from ops.inbound_messages
                        where sender_key = %s and keyword in ('stop', 'start')
                          and received_at > clock_timestamp() - interval '{REPEAT_STOP_WINDOW}'
                        order by received_at desc, id desc limit 1""",
                    (key,),
                ).fetchone()
            if not late and (last is None or last[0] != "stop"):
                reply_kind = "stop_confirmation"
                text = reply_text("stop", language, *_practice(conn, location_id))
        elif words == "start":
            counts["opt_in"] += len(_record_opt(conn, people, channel="sms", status="opt_in", source="sms_start"))
            if not late:
                reply_kind = "start_confirmation"
                text = reply_text("start", language, *_practice(conn, location_id))
        elif words == "help" and not late:
            reply_kind = "help"
            text = reply_text("help", language, *_practice(conn, location_id))
        inbound_id = conn.execute(
            """insert into ops.inbound_messages (provider_message_id, person_id, person_ids, location_id, channel,
                   keyword, keyword_match, sender_key, reply, source, received_at)
               values (%s, %s, %s, %s, 'sms', %s, %s, %s, %s, %s, coalesce(%s, clock_timestamp()))
               returning id""",
            (message.sid, primary.person_id if primary else None, people, location_id, words, classification.match,
             key, reply_kind, source, received_at),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        if words == "other":
            conn.execute(
                """insert into ops.staff_queue (inbound_message_id, person_id, person_ids, location_id, channel, body,
                       received_at)
                   values (%s, %s, %s, %s, 'sms', %s, coalesce(%s, clock_timestamp()))""",
                (inbound_id, primary.person_id if primary else None, people, location_id, message.body, received_at),
            )
            counts["staff_queued"] += 1
        bump_counters(conn, counts, source)
        return InboundOutcome("accepted", words, reply_kind, len(people), twiml(text), superseded)

    outcome = in_transaction(url, work)
    log.info(
        "twilio inbound %s %s: %s, keyword %s, %d matching person(s), reply %s",
        source,
        message.sid,
        outcome.result,
        outcome.keyword,
        outcome.people,
        outcome.reply,
    )
    return outcome
