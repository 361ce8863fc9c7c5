"""Nightly outreach planning: advance episodes, pick tonight's touches, apply caps, write batches.

Planning reads the marts dbt built for the run's as-of date, so it is a pure
function of the warehouse and the as-of date: re-running the same night plans
nothing new (batches for an as-of date are written once). Everything is
written in one transaction: episodes, batches and outbox rows appear together.

Contact rules applied here (and checked again at send time, in ``sending``):
consent and opt-outs per channel and valid contacts (from the candidates mart),
frequency caps per person and per household across all rules and locations,
language with fallback (in the templates), quiet hours (at send time).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta

import psycopg
from psycopg.types.json import Jsonb

from reactivation.outreach.config import Cadence, OutreachConfig
from reactivation.outreach.practice import message_reasons, practice_details
from reactivation.outreach.templates import render
from reactivation.warehouse import connect

log = logging.getLogger(__name__)

SAMPLES_PER_BATCH = 3


@dataclass
class Candidate:
    person_id: str
    household_id: str
    location_id: str
    rule_id: str
    segment: str
    priority_score: float
    language: str
    contactable: tuple[str, ...]


@dataclass
class PlannedTouch:
    outreach_key: str
    episode_id: str
    touch_number: int
    candidate: Candidate
    channel: str


@dataclass
class PlanSummary:
    as_of: str
    already_planned: bool = False
    episodes_started: int = 0
    episodes_ended: Counter = field(default_factory=Counter)
    touches_planned: int = 0
    held_out: int = 0
    capped: Counter = field(default_factory=Counter)
    batches: dict[str, int] = field(default_factory=dict)
    batch_status: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "as_of": self.as_of,
            "already_planned": self.already_planned,
            "episodes_started": self.episodes_started,
            "episodes_ended": dict(self.episodes_ended),
            "touches_planned": self.touches_planned,
            "held_out": self.held_out,
            "capped": dict(self.capped),
            "batches": len(self.batches),
            "batch_status": dict(self.batch_status),
        }


def outreach_key(person_id: str, episode_id: str, touch_number: int, channel: str) -> str:
    """The exactly-once key: one provider send at most, ever, per (person, episode, touch, channel)."""
    raw = f"{person_id}|{episode_id}|{touch_number}|{channel}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def episode_id_for(person_id: str, rule_id: str, started_on: date) -> str:
    return hashlib.sha256(f"{person_id}|{rule_id}|{started_on.isoformat()}".encode()).hexdigest()[:24]


def in_holdout(person_id: str, rule_id: str, share: float) -> bool:
    """Stable, uniform assignment: the same person and rule always land in the same arm."""
    if share <= 0:
        return False
    bucket = int(hashlib.sha256(f"holdout|{person_id}|{rule_id}".encode()).hexdigest()[:8], 16) % 10_000
    return bucket < share * 10_000


def batch_id_for(as_of: date, location_id: str, channel: str) -> str:
    return f"{as_of.isoformat()}:{location_id}:{channel}"


def _load_candidates(conn: psycopg.Connection) -> dict[str, Candidate]:
    rows = conn.execute(
        """select person_id, household_id, location_id, rule_id, segment, priority_score, language,
                  contactable_channels
           from marts.outreach_candidates"""
    ).fetchall()
    return {
        row[0]: Candidate(
            person_id=row[0],
            household_id=row[1] or row[0],
            location_id=row[2] or "unknown",
            rule_id=row[3],
            segment=row[4],
            priority_score=float(row[5] or 0),
            language=row[6] or "en",
            contactable=tuple(c for c in (row[7] or "").split(",") if c),
        )
        for row in rows
    }


def _end_reasons(conn: psycopg.Connection) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
    """Per (person, rule): why an active episode should end, and the set of gaps still open."""
    open_gaps = {
        (p, r) for p, r in conn.execute("select person_id, rule_id from marts.care_gaps where status = 'open'")
    }
    reasons: dict[tuple[str, str], str] = {}
    for person_id, rule_id, reason_code in conn.execute(
        "select person_id, rule_id, reason_code from marts.outreach_suppressions"
    ):
        if reason_code == "future_appointment":
            reasons[(person_id, rule_id)] = "booked"
        elif reason_code == "opted_out" and (person_id, rule_id) not in reasons:
            reasons[(person_id, rule_id)] = "opted_out"
        elif reason_code == "deceased":
            reasons[(person_id, rule_id)] = "gap_closed"
    return reasons, open_gaps


def _touch_counts(conn: psycopg.Connection, as_of: date) -> tuple[Counter, Counter, Counter, Counter]:
    """Touches already made: per person and household, on the as-of day and in the 7 days up to it."""
    person_day, person_week, household_day, household_week = Counter(), Counter(), Counter(), Counter()
    for person_id, household_id, touched_on in conn.execute(
        """select person_id, coalesce(household_id, person_id), cast(touched_at as date)
           from ops.outreach_touches
           where cast(touched_at as date) between %s and %s and status not in ('failed', 'cancelled')""",
        (as_of - timedelta(days=6), as_of),
    ):
        person_week[person_id] += 1
        household_week[household_id] += 1
        if touched_on == as_of:
            person_day[person_id] += 1
            household_day[household_id] += 1
    return person_day, person_week, household_day, household_week


def _choose_channel(cadence_channel: str, candidate: Candidate, config: OutreachConfig) -> str | None:
    if cadence_channel in candidate.contactable:
        return cadence_channel
    for channel in config.channel_fallback:
        if channel in candidate.contactable:
            return channel
    return None


def plan_outreach(
    url: str,
    *,
    as_of: date,
    dag_run_id: str,
    config: OutreachConfig,
    blocked_global: list[str] | None = None,
    blocked_locations: dict[str, list[str]] | None = None,
) -> PlanSummary:
    """Plan tonight's touches into batches. A gate block marks the affected batches blocked."""
    summary = PlanSummary(as_of=as_of.isoformat())
    with connect(url) as conn, conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('reactivation.plan_outreach'))")
        existing = conn.execute("select status, count(*) from ops.batches where as_of = %s group by status", (as_of,))
        existing_counts = dict(existing.fetchall())
        if existing_counts:
            summary.already_planned = True
            summary.batch_status.update(existing_counts)
            return summary

        candidates = _load_candidates(conn)
        # Under a global block the marts are not trusted (one may even be missing): tonight's touches are
        # still worked out, to be written as blocked batches for review, but no episode or holdout changes.
        trusted = not blocked_global
        end_reasons, open_gaps = _end_reasons(conn) if trusted else ({}, None)
        active = conn.execute(
            """select episode_id, person_id, rule_id, cadence_id, started_on, touches_planned
               from ops.episodes where status = 'active'"""
        ).fetchall()

        ended_rows: list[tuple] = []
        holdout_rows: list[tuple] = []
        episode_rows: list[tuple] = []

        # 1. End episodes whose story is over.
        episodes: dict[tuple[str, str], tuple[str, Cadence, date, int]] = {}
        for episode_id, person_id, rule_id, cadence_id, started_on, touches_planned in active:
            cadence = config.cadences.get(cadence_id) or config.cadences[config.default_cadence]
            reason = end_reasons.get((person_id, rule_id))
            if reason is None and open_gaps is not None and (person_id, rule_id) not in open_gaps:
                reason = "gap_closed"
            if reason is None and touches_planned >= min(len(cadence.touches), cadence.max_attempts):
                reason = "cadence_finished"
            if reason is not None and reason in config.end_episode_on:
                ended_rows.append((as_of, reason, episode_id))
                summary.episodes_ended[reason] += 1
                continue
            episodes[(person_id, rule_id)] = (episode_id, cadence, started_on, touches_planned)

        # 2. Start an episode for each candidate's next best action that has none,
        #    unless the person is in the rule's holdout (recorded, never contacted).
        assigned = {
            (p, r): arm for p, r, arm in conn.execute("select person_id, rule_id, arm from ops.holdout").fetchall()
        }
        for candidate in list(candidates.values()):
            key = (candidate.person_id, candidate.rule_id)
            if key in episodes:
                continue
            arm = assigned.get(key)
            if arm is None:
                arm = (
                    "holdout"
                    if in_holdout(candidate.person_id, candidate.rule_id, config.holdout_share)
                    else "contacted"
                )
                holdout_rows.append((candidate.person_id, candidate.rule_id, candidate.location_id, as_of, arm))
            if arm == "holdout":
                summary.held_out += 1
                del candidates[candidate.person_id]
                continue
            cadence = config.cadence_for(candidate.rule_id, candidate.segment)
            episode_id = episode_id_for(candidate.person_id, candidate.rule_id, as_of)
            episode_rows.append(
                (episode_id, candidate.person_id, candidate.household_id, candidate.rule_id,
                 candidate.location_id, cadence.cadence_id, as_of)
            )  # fmt: skip
            episodes[key] = (episode_id, cadence, as_of, 0)
            summary.episodes_started += 1

        if not trusted:
            ended_rows, holdout_rows, episode_rows = [], [], []
            summary.episodes_ended.clear()
            summary.episodes_started = 0
        with conn.cursor() as cur:
            cur.executemany(
                "update ops.episodes set status = 'ended', ended_on = %s, end_reason = %s where episode_id = %s",
                ended_rows,
            )
            cur.executemany(
                "insert into ops.holdout (person_id, rule_id, location_id, assigned_on, arm) "
                "values (%s, %s, %s, %s, %s)",
                holdout_rows,
            )
            cur.executemany(
                """insert into ops.episodes (episode_id, person_id, household_id, rule_id, location_id, cadence_id,
                       started_on, status)
                   values (%s, %s, %s, %s, %s, %s, %s, 'active')""",
                episode_rows,
            )

        # 3. Tonight's due touches, highest priority first, within the caps.
        person_day, person_week, household_day, household_week = _touch_counts(conn, as_of)
        planned: list[PlannedTouch] = []
        ordered = sorted(candidates.values(), key=lambda c: (-c.priority_score, c.person_id))
        for candidate in ordered:
            entry = episodes.get((candidate.person_id, candidate.rule_id))
            if entry is None:
                continue
            episode_id, cadence, started_on, touches_planned = entry
            if touches_planned >= min(len(cadence.touches), cadence.max_attempts):
                continue
            touch = cadence.touches[touches_planned]
            if started_on + timedelta(days=touch.day) > as_of:
                continue
            channel = _choose_channel(touch.channel, candidate, config)
            if channel is None:
                summary.capped["no_usable_channel"] += 1
                continue
            if person_day[candidate.person_id] >= config.person_day_cap:
                summary.capped["person_day"] += 1
                continue
            if person_week[candidate.person_id] >= config.person_week_cap:
                summary.capped["person_week"] += 1
                continue
            if household_day[candidate.household_id] >= config.household_day_cap:
                summary.capped["household_day"] += 1
                continue
            if household_week[candidate.household_id] >= config.household_week_cap:
                summary.capped["household_week"] += 1
                continue
            person_day[candidate.person_id] += 1
            person_week[candidate.person_id] += 1
            household_day[candidate.household_id] += 1
            household_week[candidate.household_id] += 1
            touch_number = touches_planned + 1
            planned.append(
                PlannedTouch(
                    outreach_key=outreach_key(candidate.person_id, episode_id, touch_number, channel),
                    episode_id=episode_id,
                    touch_number=touch_number,
                    candidate=candidate,
                    channel=channel,
                )
            )

        # 4. Batches per location and channel, with a manifest for review.
        _write_batches(conn, planned, as_of, dag_run_id, config, blocked_global, blocked_locations, summary)
    log.info("outreach planned: %s", summary.as_dict())
    return summary


def _mask_manifest_samples(practice: dict, reasons: dict, touches: list[PlannedTouch], channel: str) -> list[dict]:
    samples = []
    for touch in touches[:SAMPLES_PER_BATCH]:
        if channel == "call":
            samples.append(
                {"rule_id": touch.candidate.rule_id, "call_script_reason": reasons.get((touch.candidate.rule_id, "en"))}
            )
            continue
        language = touch.candidate.language if (touch.candidate.rule_id, touch.candidate.language) in reasons else "en"
        message = render(
            channel,
            language,
            {**practice, "reason": reasons.get((touch.candidate.rule_id, language), "")},
        )
        samples.append(
            {
                "rule_id": touch.candidate.rule_id,
                "language": message.language,
                "recipient": "•••• (masked)",
                "subject": message.subject,
                "body": message.body,
            }
        )
    return samples


def _write_batches(
    conn: psycopg.Connection,
    planned: list[PlannedTouch],
    as_of: date,
    dag_run_id: str,
    config: OutreachConfig,
    blocked_global: list[str] | None,
    blocked_locations: dict[str, list[str]] | None,
    summary: PlanSummary,
) -> None:
    practices = practice_details(conn)
    reasons = message_reasons(conn)
    by_batch: dict[tuple[str, str], list[PlannedTouch]] = defaultdict(list)
    for touch in planned:
        by_batch[(touch.candidate.location_id, touch.channel)].append(touch)
    for (location_id, channel), touches in sorted(by_batch.items()):
        batch_id = batch_id_for(as_of, location_id, channel)
        rules = {t.candidate.rule_id for t in touches}
        practice = practices.get(location_id) or {
            "practice_name": location_id,
            "practice_phone": None,
            "booking_url": None,
        }
        manifest = {
            "items": len(touches),
            "by_rule": dict(Counter(t.candidate.rule_id for t in touches)),
            "by_segment": dict(Counter(t.candidate.segment for t in touches)),
            "by_language": dict(Counter(t.candidate.language for t in touches)),
            "samples": _mask_manifest_samples(practice, reasons, touches, channel),
        }
        blocked = list(blocked_global or []) + list((blocked_locations or {}).get(location_id, []))
        decided_by = None
        if blocked:
            status = "blocked"
        else:
            policy = next(
                (p for p in config.approval_policies
                 if p.covers(location_id=location_id, channel=channel, rules=rules, size=len(touches))),
                None,
            )  # fmt: skip
            status = "approved" if policy else "awaiting_approval"
            decided_by = f"policy:{policy.name}" if policy else None
        conn.execute(
            """insert into ops.batches (batch_id, dag_run_id, as_of, location_id, channel, status, items, manifest,
                   decided_by, decided_at, blocked_reasons)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, case when %s::text is null then null else now() end, %s)""",
            (batch_id, dag_run_id, as_of, location_id, channel, status, len(touches), Jsonb(manifest),
             decided_by, decided_by, Jsonb(blocked)),
        )  # fmt: skip
        if status == "blocked":
            # A blocked touch does not happen: no outbox row, and the episode stays where it was,
            # so the same touch is planned again on the next night the gate passes.
            summary.batches[batch_id] = len(touches)
            summary.batch_status[status] += 1
            continue
        with conn.cursor() as cur:
            cur.executemany(
                """insert into ops.outbox (outreach_key, batch_id, episode_id, touch_number, person_id, household_id,
                       rule_id, location_id, channel, language, state)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'planned')""",
                [
                    (t.outreach_key, batch_id, t.episode_id, t.touch_number, t.candidate.person_id,
                     t.candidate.household_id, t.candidate.rule_id, location_id, channel, t.candidate.language)
                    for t in touches
                ],
            )  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                "update ops.episodes set touches_planned = touches_planned + 1, last_touch_on = %s "
                "where episode_id = %s",
                [(as_of, t.episode_id) for t in touches],
            )
        summary.batches[batch_id] = len(touches)
        summary.batch_status[status] += 1
        summary.touches_planned += len(touches)
