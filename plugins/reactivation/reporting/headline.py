"""The night's headline numbers: what leadership reads first and what ``make run`` prints last.

Counts of people and batches for one as-of night, read from the marts the night's
``dbt build`` wrote and from what the outreach engine recorded in ``ops``. Every
number is a count or a rate; a number that cannot be known yet (a table not
built, or not readable by the current role) is ``None``, shown as "–".
"""

from __future__ import annotations

from datetime import date

import psycopg

from reactivation.reporting.queries import Catalog, show_rate
from reactivation.warehouse import connect

# Message statuses that mean the message reached the person (SendGrid and Twilio events, see webhooks).
DELIVERED_STATUSES = ("delivered", "open", "click", "read", "spamreport", "unsubscribe", "group_unsubscribe")
# Call outcomes that mean staff reached the person or left a message.
CALL_REACHED = ("reached", "voicemail", "declined", "not_now", "booked")

HEADLINE_LABELS = {
    "eligible": "Eligible",
    "contacted": "Contacted",
    "delivered": "Delivered",
    "booked": "Booked",
    "show_rate": "Show rate",
    "opt_outs": "Opt-outs",
    "blocked_batches": "Blocked batches",
}


def open_report_connection(url: str) -> psycopg.Connection:
    """A read-only, autocommit connection with a statement time limit: the report never writes."""
    conn = connect(url, autocommit=True)
    conn.execute("set session characteristics as transaction read only")
    conn.execute("set statement_timeout = '120s'")
    return conn


def _count(conn: psycopg.Connection, query: str, params: tuple) -> int | None:
    try:
        value = conn.execute(query, params).fetchone()[0]
    except psycopg.Error:
        return None
    return int(value or 0)


def night_numbers(conn: psycopg.Connection, cat: Catalog, as_of: date) -> dict:
    """The headline numbers for the night of ``as_of`` (see ``headline``)."""
    numbers: dict = {"as_of": as_of.isoformat()}

    numbers["eligible"] = (
        _count(
            conn,
            "select count(distinct person_id) from marts.care_gaps where status = 'open' and as_of_date = %s",
            (as_of,),
        )
        if cat.has("marts", "care_gaps", "person_id", "status", "as_of_date")
        else None
    )
    numbers["candidates"] = (
        _count(conn, "select count(*) from marts.outreach_candidates where as_of = %s", (as_of,))
        if cat.has("marts", "outreach_candidates", "as_of")
        else None
    )
    has_outbox = cat.has("ops", "outbox", "batch_id", "state") and cat.has("ops", "batches", "as_of")
    night_outbox = "ops.outbox as o join ops.batches as b using (batch_id) where b.as_of = %s"
    numbers["planned"] = (
        _count(conn, f"select count(*) from {night_outbox} and o.state <> 'cancelled'", (as_of,))
        if has_outbox
        else None
    )
    # Tonight's candidates who are in the holdout: recorded, never contacted (as the planner counts them).
    numbers["held_out"] = (
        _count(
            conn,
            """select count(*) from marts.outreach_candidates as c
               join ops.holdout as h on h.person_id = c.person_id and h.rule_id = c.rule_id
               where h.arm = 'holdout' and c.as_of = %s""",
            (as_of,),
        )
        if cat.has("ops", "holdout", "arm", "person_id", "rule_id")
        and cat.has("marts", "outreach_candidates", "person_id", "rule_id", "as_of")
        else None
    )
    numbers["contacted"] = (
        _count(conn, f"select count(distinct o.person_id) from {night_outbox} and o.state = 'accepted'", (as_of,))
        if has_outbox
        else None
    )
    if has_outbox and cat.has("ops", "message_status", "status") and cat.has("ops", "call_list", "outcome"):
        numbers["delivered"] = _count(
            conn,
            f"""select count(distinct o.person_id) from {night_outbox} and o.state = 'accepted' and (
                    exists (select 1 from ops.message_status as s
                            where s.outreach_key = o.outreach_key and s.status = any(%s))
                    or exists (select 1 from ops.call_list as c
                               where c.outreach_key = o.outreach_key and c.outcome = any(%s)))""",
            (as_of, list(DELIVERED_STATUSES), list(CALL_REACHED)),
        )
    else:
        numbers["delivered"] = None
    numbers["booked"] = (
        _count(
            conn,
            "select count(*) from ops.episodes where end_reason = 'booked' and ended_on = %s",
            (as_of,),
        )
        if cat.has("ops", "episodes", "end_reason", "ended_on")
        else None
    )
    numbers["show_rate"] = show_rate(conn, cat, as_of)
    # Opt-outs by people messaged tonight, after the message: a replay of an old night counts the same.
    numbers["opt_outs"] = (
        _count(
            conn,
            f"""select count(distinct o.person_id) from {night_outbox} and o.state = 'accepted'
                and exists (select 1 from ops.opt_outs as x
                            where x.person_id = o.person_id and x.status = 'opt_out'
                              and x.recorded_at >= o.created_at)""",
            (as_of,),
        )
        if has_outbox and cat.has("ops", "opt_outs", "person_id", "recorded_at")
        else None
    )
    if cat.has("ops", "batches", "status", "as_of"):
        try:
            rows = conn.execute("select status, count(*) from ops.batches where as_of = %s group by 1", (as_of,))
            batches = {status: int(n) for status, n in rows.fetchall()}
        except psycopg.Error:
            batches = None
    else:
        batches = None
    numbers["batches"] = batches
    numbers["blocked_batches"] = None if batches is None else batches.get("blocked", 0)
    numbers["gate"] = _gate(conn, cat, as_of)
    return numbers


def _gate(conn: psycopg.Connection, cat: Catalog, as_of: date) -> str | None:
    if not cat.has("ops", "gate_decisions", "scope", "blocked", "as_of"):
        return None
    try:
        row = conn.execute(
            """select blocked from ops.gate_decisions where scope = 'global' and as_of = %s
               order by decided_at desc limit 1""",
            (as_of,),
        ).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    return "blocked" if row[0] else "passed"


def headline(url: str, as_of: date) -> dict:
    """The night's numbers: eligible, contacted, delivered, booked, show rate, opt-outs, blocked batches, and more.

    ``eligible``: people with an open care gap tonight; ``contacted``: people whose message the
    provider accepted (or who were put on a call list) from tonight's batches; ``delivered``: of
    those, people with a delivery event or a reached call; ``booked``: episodes that ended in a
    booking tonight; ``show_rate``: shows ÷ bookings over the last 12 weeks (reporting mart);
    ``opt_outs``: people messaged tonight who opted out since; ``blocked_batches``: tonight's
    batches the quality gate blocked.
    """
    with open_report_connection(url) as conn:
        return night_numbers(conn, Catalog(conn), as_of)


def format_value(key: str, value) -> str:
    if value is None:
        return "–"
    if key == "show_rate":
        return f"{value * 100:.0f}%"
    return f"{value:,}"


def format_headline(numbers: dict) -> str:
    """One line for a terminal: ``eligible 784 · contacted 130 · ... · blocked batches 0``."""
    parts = [f"{label.lower()} {format_value(key, numbers.get(key))}" for key, label in HEADLINE_LABELS.items()]
    gate = numbers.get("gate")
    if gate:
        parts.append(f"quality gate {gate}")
    return f"night of {numbers.get('as_of')}: " + " · ".join(parts)
