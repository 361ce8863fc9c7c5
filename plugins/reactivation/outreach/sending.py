"""Send approved batches exactly once per outreach key, checking every contact rule again at send time.

The outbox row for a touch exists before any provider call. Its state moves
``planned → sending → accepted | failed | unknown`` and each move is committed
before the next step, so a crash at any point leaves a state that says what to
do: ``sending`` or ``unknown`` rows are reconciled with the provider (lookup by
outreach key), never re-sent blindly. 429 and 5xx answers mean "not accepted":
they are retried with exponential backoff and jitter, honouring Retry-After.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg

from reactivation.outreach.config import OutreachConfig
from reactivation.outreach.providers.base import OutboundMessage, Provider, SendResult
from reactivation.outreach.templates import render
from reactivation.warehouse import connect

log = logging.getLogger(__name__)

MAX_SEND_TRIES = 6
UNKNOWN_GRACE = timedelta(hours=6)


@dataclass
class SendSummary:
    batch_id: str
    accepted: int = 0
    failed: int = 0
    unknown: int = 0
    deferred: int = 0
    reconciled: int = 0
    cancelled: Counter = field(default_factory=Counter)
    retries: int = 0
    skipped: str | None = None

    def as_dict(self) -> dict:
        return {
            "batch_id": self.batch_id,
            "accepted": self.accepted,
            "failed": self.failed,
            "unknown": self.unknown,
            "deferred": self.deferred,
            "reconciled": self.reconciled,
            "cancelled": dict(self.cancelled),
            "retries": self.retries,
            "skipped": self.skipped,
        }


def next_window_start(now: datetime, tz: str, config: OutreachConfig) -> datetime | None:
    """None if ``now`` is inside the person's sending window, else the next window start (UTC)."""
    local = now.astimezone(ZoneInfo(tz))
    if config.quiet_start <= local.time() < config.quiet_end:
        return None
    start_day = local.date() if local.time() < config.quiet_start else local.date() + timedelta(days=1)
    start = datetime.combine(start_day, config.quiet_start, tzinfo=ZoneInfo(tz))
    return start.astimezone(UTC)


def defer_until(now: datetime, tz: str, config: OutreachConfig, *, over_cap: bool) -> datetime | None:
    """None to send now; else when to try again (UTC): the next window start in quiet hours, or the
    start of the person's next local day's window when today's cap is used up."""
    if over_cap:
        local = now.astimezone(ZoneInfo(tz))
        return datetime.combine(local.date() + timedelta(days=1), config.quiet_start, tzinfo=ZoneInfo(tz)).astimezone(
            UTC
        )
    return next_window_start(now, tz, config)


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a provider's Retry-After is a floor."""
    delay = random.uniform(0, min(30.0, 0.5 * (2**attempt)))
    return max(delay, retry_after or 0.0)


@dataclass
class _Item:
    outreach_key: str
    person_id: str
    household_id: str
    rule_id: str
    location_id: str
    channel: str
    language: str
    as_of: date


def _record(conn: psycopg.Connection, records: list[tuple[_Item, SendResult, str]], *, now: datetime) -> None:
    """Write outcomes back in one transaction: outbox state, one attempt row each, and touches (caps, reporting)."""
    states = {"accepted": "accepted", "failed": "failed", "unknown": "unknown"}
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """update ops.outbox set state = %s, provider = %s, provider_message_id = %s, error_code = %s,
                   updated_at = now()
               where outreach_key = %s""",
            [(states[r.status], r.provider, r.provider_message_id, r.error_code, i.outreach_key)
             for i, r, _ in records],
        )  # fmt: skip
        cur.executemany(
            """insert into ops.outreach_attempts (outreach_key, as_of, channel, rule_id, provider_message_id, status,
                   error_code, response, next_step)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            [(i.outreach_key, i.as_of, i.channel, i.rule_id, r.provider_message_id, states[r.status], r.error_code,
              r.response[:200] if r.response else None, step) for i, r, step in records],
        )  # fmt: skip
        cur.executemany(
            """insert into ops.outreach_touches (outreach_key, person_id, household_id, rule_id, channel, touched_at,
                   status)
               values (%s, %s, %s, %s, %s, %s, 'accepted') on conflict (outreach_key) do nothing""",
            [(i.outreach_key, i.person_id, i.household_id, i.rule_id, i.channel, now)
             for i, r, _ in records if r.status == "accepted"],
        )  # fmt: skip


def _cancel(conn: psycopg.Connection, item: _Item, reason: str) -> None:
    conn.execute(
        "update ops.outbox set state = 'cancelled', cancel_reason = %s, updated_at = now() where outreach_key = %s",
        (reason, item.outreach_key),
    )
    conn.execute(
        """insert into ops.outreach_attempts (outreach_key, as_of, channel, rule_id, status, response, next_step)
           values (%s, %s, %s, %s, 'cancelled', %s, 'none: not contacted')""",
        (item.outreach_key, item.as_of, item.channel, item.rule_id, reason),
    )


_SEND_TIME_FACTS = """
with latest_opt_outs as (
    select distinct on (person_id, channel) person_id, channel, status
    from ops.opt_outs
    where person_id = any(%(people)s)
    order by person_id, channel, recorded_at desc
),
future_bookings as (
    select distinct sources.person_id
    from staging.stg_emr__appointments as appointments
    inner join marts.person_sources as sources
        on appointments.source_system = sources.source_system
        and appointments.source_location_id = sources.source_location_id
        and appointments.patient_id = sources.patient_id
    where sources.person_id = any(%(people)s)
      and appointments.status = 'booked'
      and cast(appointments.scheduled_at as date) > %(as_of)s
)
select persons.person_id, persons.timezone, persons.is_deceased, persons.phone_e164, persons.phone_is_valid,
       persons.email, persons.email_is_valid,
       coalesce(bool_or(o.channel = 'sms' and o.status = 'opt_out'), false),
       coalesce(bool_or(o.channel = 'email' and o.status = 'opt_out'), false),
       coalesce(bool_or(o.channel = 'call' and o.status = 'opt_out'), false),
       coalesce(bool_or(o.channel = 'any' and o.status = 'opt_out'), false),
       exists (select 1 from future_bookings b where b.person_id = persons.person_id)
from marts.persons as persons
left join latest_opt_outs as o on o.person_id = persons.person_id
where persons.person_id = any(%(people)s)
group by persons.person_id, persons.timezone, persons.is_deceased, persons.phone_e164, persons.phone_is_valid,
         persons.email, persons.email_is_valid
"""


def _touched_today(
    conn: psycopg.Connection, people: list[str], households: list[str], now: datetime
) -> tuple[Counter, Counter]:
    person_counts: Counter = Counter()
    household_counts: Counter = Counter()
    for person_id, household_id in conn.execute(
        """select person_id, coalesce(household_id, person_id) from ops.outreach_touches
           where touched_at > %s - interval '20 hours' and touched_at <= %s and status = 'accepted'
             and (person_id = any(%s) or household_id = any(%s))""",
        (now, now, people, households),
    ):
        person_counts[person_id] += 1
        household_counts[household_id] += 1
    return person_counts, household_counts


def send_batch(
    url: str,
    batch_id: str,
    *,
    providers: dict[str, Provider],
    config: OutreachConfig,
    practices: dict[str, dict],
    reasons: dict[tuple[str, str], str],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
) -> SendSummary:
    """Send one approved batch. Safe to run again at any time: it only moves rows forward."""
    summary = SendSummary(batch_id=batch_id)
    with connect(url, autocommit=True) as conn:
        batch = conn.execute(
            "select status, channel, as_of from ops.batches where batch_id = %s", (batch_id,)
        ).fetchone()
        if batch is None:
            summary.skipped = "no such batch"
            return summary
        status, channel, as_of = batch
        if status not in {"approved", "sending"}:
            summary.skipped = f"batch is {status}"
            return summary
        provider = providers[channel]
        conn.execute(
            "update ops.batches set status = 'sending' where batch_id = %s and status = 'approved'", (batch_id,)
        )

        # 1. Leftovers of a crash: a row in 'sending' may or may not have reached the provider.
        conn.execute(
            "update ops.outbox set state = 'unknown', updated_at = now() where batch_id = %s and state = 'sending'",
            (batch_id,),
        )
        summary.reconciled += _reconcile(conn, batch_id, provider, clock)

        # 2. Due rows, re-checked against the latest data.
        now = clock()
        rows = conn.execute(
            """select outreach_key, person_id, coalesce(household_id, person_id), rule_id, location_id, channel,
                      language
               from ops.outbox
               where batch_id = %s and state in ('planned', 'deferred') and coalesce(not_before, %s) <= %s
               order by created_at, outreach_key""",
            (batch_id, now, now),
        ).fetchall()
        items = [_Item(*row, as_of=as_of) for row in rows]
        if not items:
            _finish_batch(conn, batch_id)
            return summary
        people = sorted({i.person_id for i in items})
        facts = {row[0]: row for row in conn.execute(_SEND_TIME_FACTS, {"people": people, "as_of": as_of})}
        households = sorted({i.household_id for i in items})
        touched_person, touched_household = _touched_today(conn, people, households, now)
        ready: list[tuple[_Item, OutboundMessage]] = []
        for item in items:
            fact = facts.get(item.person_id)
            if fact is None:
                _cancel(conn, item, "person no longer in the warehouse")
                summary.cancelled["unknown_person"] += 1
                continue
            _, tz, deceased, phone, phone_ok, email, email_ok, sms_out, email_out, call_out, any_out, booked = fact
            opted_out = any_out or {"sms": sms_out, "email": email_out, "call": call_out}[item.channel]
            recipient, valid = (email, email_ok) if item.channel == "email" else (phone, phone_ok)
            reason = (
                "deceased" if deceased
                else "opted_out" if opted_out
                else "booked" if booked
                else "no_valid_contact" if not (recipient and valid)
                else None
            )  # fmt: skip
            if reason:
                _cancel(conn, item, reason)
                summary.cancelled[reason] += 1
                continue
            over_cap = (
                touched_person[item.person_id] >= config.person_day_cap
                or touched_household[item.household_id] >= config.household_day_cap
            )
            not_before = defer_until(now, tz or "UTC", config, over_cap=over_cap)
            if not_before is not None:
                conn.execute(
                    "update ops.outbox set state = 'deferred', not_before = %s, updated_at = now() "
                    "where outreach_key = %s",
                    (not_before, item.outreach_key),
                )
                summary.deferred += 1
                continue
            touched_person[item.person_id] += 1
            touched_household[item.household_id] += 1
            practice = practices.get(item.location_id) or {
                "practice_name": item.location_id,
                "practice_phone": None,
                "booking_url": None,
            }
            ready.append((item, _message(item, recipient, practice, reasons)))

        # 3. Claim, send with backoff, record. Each claim is committed before the provider call.
        for start in range(0, len(ready), provider.max_batch):
            chunk = ready[start : start + provider.max_batch]
            claimed = {
                row[0]
                for row in conn.execute(
                    """update ops.outbox set state = 'sending', send_attempts = send_attempts + 1, updated_at = now()
                       where outreach_key = any(%s) and state in ('planned', 'deferred') returning outreach_key""",
                    ([item.outreach_key for item, _ in chunk],),
                )
            }
            chunk = [(item, message) for item, message in chunk if item.outreach_key in claimed]
            _send_chunk(conn, provider, chunk, summary, sleep, now)
        _finish_batch(conn, batch_id)
    log.info("batch %s sent: %s", batch_id, summary.as_dict())
    return summary


def _message(item: _Item, recipient: str, practice: dict, reasons: dict[tuple[str, str], str]) -> OutboundMessage:
    language = item.language if (item.rule_id, item.language) in reasons else "en"
    reason = reasons.get((item.rule_id, language), "")
    if item.channel == "call":
        return OutboundMessage(
            item.outreach_key, "call", recipient, language, None, reason, item.location_id, item.rule_id
        )
    rendered = render(item.channel, language, {**practice, "reason": reason})
    return OutboundMessage(
        outreach_key=item.outreach_key,
        channel=item.channel,
        recipient=recipient,
        language=rendered.language,
        subject=rendered.subject,
        body=rendered.body,
        location_id=item.location_id,
        rule_id=item.rule_id,
    )


def _send_chunk(
    conn, provider: Provider, chunk: list[tuple[_Item, OutboundMessage]], summary: SendSummary, sleep, now: datetime
) -> None:
    pending = dict((item.outreach_key, (item, message)) for item, message in chunk)
    for attempt in range(MAX_SEND_TRIES):
        if not pending:
            return
        results = provider.send([message for _, message in pending.values()])
        retry_after = None
        still_pending = {}
        settled: list[tuple[_Item, SendResult, str]] = []
        for result in results:
            item, message = pending[result.outreach_key]
            if result.status == "retry":
                still_pending[result.outreach_key] = (item, message)
                retry_after = max(retry_after or 0.0, result.retry_after or 0.0)
                continue
            next_step = {
                "accepted": "await delivery events; next touch per cadence",
                "failed": "none: provider refused; check the error code",
                "unknown": "reconcile with the provider before any resend",
            }[result.status]
            settled.append((item, result, next_step))
            summary.accepted += result.status == "accepted"
            summary.failed += result.status == "failed"
            summary.unknown += result.status == "unknown"
        if settled:
            _record(conn, settled, now=now)
        pending = still_pending
        if pending:
            summary.retries += 1
            sleep(_backoff(attempt, retry_after))
    for item, _ in pending.values():
        # Never accepted after every try: back to planned for the next run, nothing was sent.
        conn.execute(
            "update ops.outbox set state = 'planned', updated_at = now() where outreach_key = %s", (item.outreach_key,)
        )
        conn.execute(
            """insert into ops.outreach_attempts (outreach_key, as_of, channel, rule_id, status, response, next_step)
               values (%s, %s, %s, %s, 'retry_exhausted', 'provider busy', 'retry on the next run')""",
            (item.outreach_key, item.as_of, item.channel, item.rule_id),
        )


def _reconcile(conn: psycopg.Connection, batch_id: str, provider: Provider, clock) -> int:
    """Settle rows whose outcome is unknown by asking the provider; never resend blindly."""
    rows = conn.execute(
        """select o.outreach_key, o.person_id, coalesce(o.household_id, o.person_id), o.rule_id, o.location_id,
                  o.channel, o.language, b.as_of, o.updated_at,
                  case when o.channel = 'email' then p.email else p.phone_e164 end
           from ops.outbox o join ops.batches b using (batch_id)
           left join marts.persons p on p.person_id = o.person_id
           where o.batch_id = %s and o.state = 'unknown'""",
        (batch_id,),
    ).fetchall()
    settled = 0
    for *fields_, as_of, updated_at, recipient in rows:
        item = _Item(*fields_, as_of=as_of)
        found = provider.lookup(item.outreach_key, recipient, updated_at - timedelta(hours=1))
        if found is not None and found.status == "accepted":
            _record(conn, [(item, found, "reconciled: the provider had accepted it")], now=clock())
            settled += 1
        elif found is None and clock() - updated_at > UNKNOWN_GRACE:
            # The provider has no trace of it long after the attempt: it was never accepted.
            conn.execute(
                "update ops.outbox set state = 'planned', updated_at = now() where outreach_key = %s",
                (item.outreach_key,),
            )
            settled += 1
    return settled


def _finish_batch(conn: psycopg.Connection, batch_id: str) -> None:
    open_rows = conn.execute(
        "select count(*) from ops.outbox "
        "where batch_id = %s and state in ('planned', 'deferred', 'sending', 'unknown')",
        (batch_id,),
    ).fetchone()[0]
    if open_rows == 0:
        conn.execute("update ops.batches set status = 'sent' where batch_id = %s", (batch_id,))
