"""Staff calls: a call list per location (a warehouse table and a CSV export) with outcomes read back.

"Sending" a call touch puts it on tonight's list for its location. Staff fill in
an outcome code per row; ``import_outcomes`` reads the CSV back.
"""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import psycopg

from reactivation.outreach.providers.base import OutboundMessage, SendResult
from reactivation.warehouse import connect

OUTCOMES = ("reached", "voicemail", "wrong_number", "declined", "not_now", "booked")
# What an outcome means for the episode (None: the cadence goes on).
EPISODE_END = {"declined": "declined", "not_now": "not_now", "booked": "booked", "wrong_number": "unreachable"}
CSV_COLUMNS = [
    "outreach_key",
    "location_id",
    "rule_id",
    "reason",
    "first_name",
    "last_name",
    "phone",
    "outcome",
    "note",
]


class CallListProvider:
    """Adds call touches to ops.call_list; the export happens per location after the batch."""

    name = "call_list"
    channel = "call"
    max_batch = 1000

    def __init__(self, url: str, as_of: date) -> None:
        self.url = url
        self.as_of = as_of

    def send(self, messages: list[OutboundMessage]) -> list[SendResult]:
        with connect(self.url) as conn, conn.cursor() as cur:
            cur.executemany(
                """insert into ops.call_list (outreach_key, location_id, person_id, rule_id, as_of)
                   select outreach_key, location_id, person_id, rule_id, %s from ops.outbox where outreach_key = %s
                   on conflict (outreach_key) do nothing""",
                [(self.as_of, m.outreach_key) for m in messages],
            )
        return [
            SendResult(m.outreach_key, "accepted", self.name, provider_message_id=f"call:{m.outreach_key}")
            for m in messages
        ]

    def lookup(self, outreach_key: str, recipient: str | None = None, since=None) -> SendResult | None:
        with connect(self.url) as conn:
            row = conn.execute("select 1 from ops.call_list where outreach_key = %s", (outreach_key,)).fetchone()
        return SendResult(outreach_key, "accepted", self.name, f"call:{outreach_key}") if row else None


def export_call_lists(url: str, as_of: date, folder: Path) -> dict[str, Path]:
    """Write one CSV per location for staff: who to call, why, and an empty outcome column."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with connect(url) as conn:
        rows = conn.execute(
            """select c.outreach_key, c.location_id, c.rule_id, r.reason, n.first_name, n.last_name, p.phone_e164
               from ops.call_list c
               join marts.persons p on p.person_id = c.person_id
               left join reference.message_reasons r on r.rule_id = c.rule_id and r.language = 'en'
               left join lateral (
                   select s.first_name, s.last_name from staging.stg_emr__patients s
                   join marts.person_sources ps on ps.patient_key = s.patient_key
                   where ps.person_id = c.person_id order by s.extract_date desc limit 1
               ) n on true
               where c.as_of = %s order by c.location_id, c.rule_id, c.outreach_key""",
            (as_of,),
        ).fetchall()
    by_location: dict[str, list] = {}
    for row in rows:
        by_location.setdefault(row[1], []).append(row)
    for location_id, location_rows in by_location.items():
        path = folder / f"call_list_{as_of.isoformat()}_{location_id}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for row in location_rows:
                writer.writerow([*row, "", ""])
        path.chmod(0o600)  # the list names patients: readable by the pipeline's user only
        written[location_id] = path
    return written


class CallOutcomeError(ValueError):
    """A call-list file cannot be read back; the message names the line."""


def import_outcomes(url: str, path: Path) -> dict[str, int]:
    """Read staff outcomes back: update the call list and end episodes the outcome decides."""
    counts = {"updated": 0, "blank": 0}
    with path.open(newline="") as handle, connect(url) as conn:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "outreach_key" not in reader.fieldnames or "outcome" not in reader.fieldnames:
            raise CallOutcomeError(f"{path}: needs the columns outreach_key and outcome")
        for line, row in enumerate(reader, start=2):
            outcome = (row.get("outcome") or "").strip().lower().replace(" ", "_")
            if not outcome:
                counts["blank"] += 1
                continue
            if outcome not in OUTCOMES:
                raise CallOutcomeError(f"{path}, line {line}: unknown outcome (use one of {', '.join(OUTCOMES)})")
            _apply_outcome(conn, row["outreach_key"].strip(), outcome, (row.get("note") or "").strip()[:500])
            counts["updated"] += 1
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def _apply_outcome(conn: psycopg.Connection, outreach_key: str, outcome: str, note: str) -> None:
    episode = conn.execute(
        """update ops.call_list set outcome = %s, outcome_at = now(), note = nullif(%s, '')
           where outreach_key = %s
           returning (select episode_id from ops.outbox where outreach_key = %s)""",
        (outcome, note, outreach_key, outreach_key),
    ).fetchone()
    if episode is None:
        raise CallOutcomeError(f"unknown outreach key {outreach_key[:8]}…: not on any call list")
    end_reason = EPISODE_END.get(outcome)
    if end_reason:
        conn.execute(
            """update ops.episodes set status = 'ended', ended_on = current_date, end_reason = %s
               where episode_id = %s and status = 'active'""",
            (end_reason, episode[0]),
        )
