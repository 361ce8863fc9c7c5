"""Outcomes and reporting: bookings credited to outreach, decisions, the funnel, the holdout lift.

Why: leadership decides where outreach is worth its cost from these numbers. A booking credited
to a touch it did not follow, a holdout counted differently from the contacted arm, or a funnel
that loses yesterday's eligibility when the marts are rebuilt would all mislead them. These tests
build the real dbt project on a real warehouse: the Synthea fixture plus a small generated
extract, a handful of ops rows written for known people (episodes, touches, provider statuses, a
call outcome, a STOP reply, holdout assignments), then a later extract with their bookings, and
assert the exact numbers for those people. People are surrogate ids; nothing here is printed.
"""

from __future__ import annotations

import csv
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from reactivation.generate import generate_extract
from reactivation.ingest.pipeline import load_path
from reactivation.warehouse import ensure_schema

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
FIRST_NIGHT = date(2023, 10, 31)
LATER_NIGHT = date(2023, 12, 5)
# Clock time of the touches (replies and opt-outs are matched on clock time).
TOUCHED_AT = datetime(2023, 11, 1, 15, 0, tzinfo=UTC)
WEEK_OF_TOUCHES = date(2023, 10, 30)
REPORTING_MODELS = (
    "rpt_reactivation_funnel",
    "rpt_bookings_weekly",
    "rpt_location_comparison",
    "rpt_holdout_lift",
    "rpt_data_quality_trend",
    "rpt_opt_outs_and_complaints",
)


@dataclass(frozen=True)
class Patient:
    """One person chosen from tonight's candidates, with the source record their bookings go on."""

    person_id: str
    rule_id: str
    segment: str
    location_id: str
    patient_id: str


def _build(url: str, as_of: date, select: str | None = None) -> dict:
    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt_build

    get_settings.cache_clear()
    result = run_dbt_build(url, as_of=as_of, select=select)
    assert result["success"], result["failures"]
    return result


def _rows(url: str, sql: str, params: tuple = ()) -> list[dict]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def _pick_patients(url: str, location_id: str, count: int) -> list[Patient]:
    """Candidates with a single source record at one location, in a stable order."""
    rows = _rows(
        url,
        """select candidates.person_id, candidates.rule_id, candidates.segment, sources.patient_id
           from marts.outreach_candidates as candidates
           inner join marts.person_sources as sources on candidates.person_id = sources.person_id
           where candidates.location_id = %s and sources.source_location_id = %s
             and sources.source_system = 'native_csv' and sources.person_record_count = 1
           order by candidates.person_id
           limit %s""",
        (location_id, location_id, count),
    )
    assert len(rows) == count, "the generated extract must hold enough candidates at one location"
    return [Patient(r["person_id"], r["rule_id"], r["segment"], location_id, r["patient_id"]) for r in rows]


def _write_ops_rows(url: str, people: dict[str, Patient]) -> None:
    """What the outreach engine, providers, staff and the webhook receiver would have recorded.

    A: sms delivered, books 3 days later and shows.   B: sms delivered, books on day 31 (too late).
    C: call, staff record "declined".                 D: email bounced, cadence finished: unreachable.
    E: sms delivered, replies STOP.                   F: sms delivered, booking with no created_at
                                                         (dated by its schedule), no-show.
    H1, H2: the randomized holdout (never contacted); H1 books 5 days after assignment.
    """
    channel = {"A": "sms", "B": "sms", "C": "call", "D": "email", "E": "sms", "F": "sms"}
    status = {"A": "delivered", "B": "delivered", "D": "bounce", "E": "delivered", "F": "delivered"}
    ended = {"B": "cadence_finished", "C": "declined", "D": "cadence_finished", "E": "opted_out"}
    location = next(iter(people.values())).location_id
    with psycopg.connect(url) as conn:
        for ch in ("sms", "email", "call"):
            conn.execute(
                """insert into ops.batches (batch_id, dag_run_id, as_of, location_id, channel, status, items, manifest)
                   values (%s, 'test-run', %s, %s, %s, 'sent', 1, '{}'::jsonb)""",
                (f"{FIRST_NIGHT}:{location}:{ch}", FIRST_NIGHT, location, ch),
            )
        for label, patient in people.items():
            arm = "holdout" if label.startswith("H") else "contacted"
            conn.execute(
                """insert into ops.holdout (person_id, rule_id, location_id, assigned_on, arm)
                   values (%s, %s, %s, %s, %s)""",
                (patient.person_id, patient.rule_id, location, FIRST_NIGHT, arm),
            )
            if arm == "holdout":
                continue
            episode_id = f"ep-{label}"
            conn.execute(
                """insert into ops.episodes (episode_id, person_id, rule_id, location_id, cadence_id, started_on,
                       status, touches_planned, last_touch_on, ended_on, end_reason)
                   values (%s, %s, %s, %s, 'standard', %s, %s, 1, %s, %s, %s)""",
                (episode_id, patient.person_id, patient.rule_id, location, FIRST_NIGHT,
                 "ended" if label in ended else "active", FIRST_NIGHT,
                 LATER_NIGHT if label in ended else None, ended.get(label)),
            )  # fmt: skip
            key = f"key-{label}"
            conn.execute(
                """insert into ops.outbox (outreach_key, batch_id, episode_id, touch_number, person_id, rule_id,
                       location_id, channel, language, state, provider_message_id)
                   values (%s, %s, %s, 1, %s, %s, %s, %s, 'en', 'accepted', %s)""",
                (key, f"{FIRST_NIGHT}:{location}:{channel[label]}", episode_id, patient.person_id, patient.rule_id,
                 location, channel[label], f"msg-{label}"),
            )  # fmt: skip
            conn.execute(
                """insert into ops.outreach_attempts (outreach_key, attempted_at, as_of, channel, rule_id,
                       provider_message_id, status, next_step)
                   values (%s, %s, %s, %s, %s, %s, 'accepted', 'await delivery')""",
                (key, TOUCHED_AT, FIRST_NIGHT, channel[label], patient.rule_id, f"msg-{label}"),
            )
            if label in status:
                conn.execute(
                    """insert into ops.message_status (outreach_key, provider, provider_message_id, status,
                           status_rank, occurred_at)
                       values (%s, %s, %s, %s, %s, %s)""",
                    (key, "sendgrid" if channel[label] == "email" else "twilio", f"msg-{label}", status[label],
                     9 if status[label] == "bounce" else 3, TOUCHED_AT + timedelta(minutes=1)),
                )  # fmt: skip
        conn.execute(
            """insert into ops.call_list (outreach_key, location_id, person_id, rule_id, as_of, outcome, outcome_at)
               values ('key-C', %s, %s, %s, %s, 'declined', %s)""",
            (location, people["C"].person_id, people["C"].rule_id, FIRST_NIGHT, TOUCHED_AT + timedelta(days=1)),
        )
        conn.execute(
            """insert into ops.inbound_messages (provider_message_id, person_id, person_ids, location_id, keyword,
                   keyword_match, sender_key, reply, received_at)
               values ('in-E', %s, array[%s], %s, 'stop', 'exact', 'sender-E', 'stop_confirmation', %s)""",
            (people["E"].person_id, people["E"].person_id, location, TOUCHED_AT + timedelta(hours=2)),
        )
        # A reply before the touch went out is not a reply to it.
        conn.execute(
            """insert into ops.inbound_messages (provider_message_id, person_id, person_ids, location_id, keyword,
                   sender_key, reply, received_at)
               values ('in-A-early', %s, array[%s], %s, 'other', 'sender-A', 'none', %s)""",
            (people["A"].person_id, people["A"].person_id, location, TOUCHED_AT - timedelta(days=1)),
        )
        conn.execute(
            """insert into ops.opt_outs (person_id, channel, status, source, recorded_at)
               values (%s, 'sms', 'opt_out', 'sms_stop', %s)""",
            (people["E"].person_id, TOUCHED_AT + timedelta(hours=2)),
        )


def _write_later_extract(folder: Path, people: dict[str, Patient]) -> Path:
    """The next extract of the same location: the bookings the people made after the touches."""
    folder.mkdir(parents=True)
    bookings = [
        # label, status, scheduled_at, created_at
        ("A", "completed", "2023-11-10T09:00:00", "2023-11-03T10:00:00"),
        ("B", "booked", "2023-12-15T09:00:00", "2023-12-01T10:00:00"),  # day 31 after the touch
        ("F", "no_show", "2023-11-25T09:00:00", ""),  # no created_at: dated by its schedule
        ("H1", "completed", "2023-11-20T09:00:00", "2023-11-05T10:00:00"),
    ]
    path = folder / "appointments_20231205.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["appointment_id", "patient_id", "status", "scheduled_at", "appointment_type", "provider_id",
             "location_id", "created_at", "cancelled_at"]
        )  # fmt: skip
        for label, status, scheduled_at, created_at in bookings:
            patient = people[label]
            writer.writerow(
                [f"later-{label}", patient.patient_id, status, scheduled_at, "Recall", "", patient.location_id,
                 created_at, ""]
            )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def reporting(embedded_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A warehouse built twice: a fresh one (empty ops tables), then after outreach and a later extract."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    tmp = tmp_path_factory.mktemp("reporting")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp / "state"))
        try:
            ensure_schema(url)
            assert not load_path(url, SYNTHEA, fmt="synthea", location="nebraska").totals["rejected"]
            extract = tmp / "extract"
            expected = generate_extract(extract, patients=400, locations=2, seed=20231031, as_of=FIRST_NIGHT)
            for loc in expected["locations"]:
                load_path(url, extract / loc["location_id"], fmt="csv", location=loc["location_id"])
            location = expected["locations"][0]["location_id"]

            _build(url, FIRST_NIGHT)
            fresh = {model: _rows(url, f"select * from marts.{model}") for model in REPORTING_MODELS}
            first_night_snapshot = _rows(
                url,
                "select status, count(*) as n from intermediate.int_eligibility_daily where as_of = %s group by 1",
                (FIRST_NIGHT,),
            )

            labels = ["A", "B", "C", "D", "E", "F", "H1", "H2"]
            people = dict(zip(labels, _pick_patients(url, location, len(labels)), strict=True))
            _write_ops_rows(url, people)
            later = _write_later_extract(tmp / "later" / location, people)
            summary = load_path(url, later, fmt="csv", location=location, extract_date=LATER_NIGHT)
            assert summary.totals["rows_loaded"] == 4, summary.totals

            _build(url, LATER_NIGHT)
            yield {
                "url": url,
                "people": people,
                "location": location,
                "fresh": fresh,
                "first_night_snapshot": first_night_snapshot,
            }
        finally:
            with psycopg.connect(embedded_server, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


def _outcome(reporting: dict, label: str) -> dict:
    rows = _rows(
        reporting["url"],
        "select * from intermediate.int_episode_outcomes where episode_id = %s",
        (f"ep-{label}",),
    )
    assert len(rows) == 1
    return rows[0]


def test_reports_build_on_a_fresh_warehouse_before_any_send(reporting: dict) -> None:
    fresh = reporting["fresh"]
    funnel = fresh["rpt_reactivation_funnel"]
    assert sum(r["eligible"] for r in funnel) > 0
    assert sum(r["candidates"] for r in funnel) > 0
    assert all(r["contacted"] == r["booked"] == r["decided"] == 0 for r in funnel)
    # Every eligible person-rule is exactly one of: candidate, suppressed (by one reason), waiting.
    for row in funnel:
        reasons = sum(v for k, v in row.items() if k.startswith("suppressed_"))
        assert row["suppressed"] == reasons
        assert row["eligible"] == row["candidates"] + row["suppressed"] + row["waiting_other_gap"]
    # The Synthea people have no phone or email: bad data shows up as a rate, not as an error.
    assert sum(r["suppressed_no_valid_contact"] for r in funnel) > 0
    assert fresh["rpt_holdout_lift"] == []
    assert fresh["rpt_data_quality_trend"] == []  # the gate has never run: its table does not exist yet
    assert fresh["rpt_opt_outs_and_complaints"] == []
    assert {r["bookings_from_outreach"] for r in fresh["rpt_bookings_weekly"]} == {0}
    assert {r["contacted"] for r in fresh["rpt_location_comparison"]} == {0}


def test_eligibility_history_survives_the_nightly_rebuild(reporting: dict) -> None:
    url = reporting["url"]
    nights = _rows(url, "select as_of, count(*) as n from intermediate.int_eligibility_daily group by 1 order by 1")
    assert [r["as_of"] for r in nights] == [FIRST_NIGHT, LATER_NIGHT]
    kept = _rows(
        url,
        "select status, count(*) as n from intermediate.int_eligibility_daily where as_of = %s group by 1",
        (FIRST_NIGHT,),
    )
    assert sorted(kept, key=str) == sorted(reporting["first_night_snapshot"], key=str)
    # Re-running a night replaces that night's rows, never adds to them.
    before = {r["as_of"]: r["n"] for r in nights}
    _build(url, LATER_NIGHT, select="int_eligibility_daily")
    after = {r["as_of"]: r["n"] for r in _rows(
        url, "select as_of, count(*) as n from intermediate.int_eligibility_daily group by 1"
    )}  # fmt: skip
    assert after == before


def test_eligibility_tests_read_only_the_night_this_run_wrote(reporting: dict) -> None:
    """The history grows by a night's rows every night, so its tests read tonight's rows only: a
    fault in an earlier night does not fail tonight's build (nor cost a scan of every night), and a
    fault in tonight's rows does."""
    from reactivation.transform import run_dbt

    url = reporting["url"]
    duplicate = """insert into intermediate.int_eligibility_daily
                   select * from intermediate.int_eligibility_daily where as_of = %s limit 1"""
    test_command = ["test", "--select", "int_eligibility_daily,test_name:unique_combination"]
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(duplicate, (FIRST_NIGHT,))
        process, _ = run_dbt(url, test_command, as_of=LATER_NIGHT)
        assert process.returncode == 0, process.stdout[-2000:]
        assert "PASS=1" in process.stdout

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(duplicate, (LATER_NIGHT,))
        process, _ = run_dbt(url, test_command, as_of=LATER_NIGHT)
        assert process.returncode != 0
        assert "FAIL 1 unique_combination_int_eligibility_daily" in process.stdout
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """delete from intermediate.int_eligibility_daily as kept
                   where ctid not in (
                       select min(ctid) from intermediate.int_eligibility_daily
                       group by as_of, person_id, rule_id
                   )"""
            )


# The funnel's eligibility half as it was counted from the whole nightly history: each
# person once per rule and week, under their best status that week.
_WEEKLY_FROM_EVERY_NIGHT = """
    with ranked as (
        select *, cast(date_trunc('week', as_of) as date) as week_start,
               row_number() over (
                   partition by date_trunc('week', as_of), person_id, rule_id
                   order by case status when 'candidate' then 1 when 'suppressed' then 2 else 3 end, as_of desc
               ) as status_rank
        from intermediate.int_eligibility_daily where as_of <= %s
    )
    select week_start, coalesce(location_id, 'unknown') as location_id, rule_id, segment,
           preferred_channel as channel, count(*) as eligible,
           sum(case when status = 'candidate' then 1 else 0 end) as candidates,
           sum(case when status = 'suppressed' then 1 else 0 end) as suppressed,
           sum(case when status = 'suppressed' and reason = 'no_valid_contact' then 1 else 0 end)
               as suppressed_no_valid_contact,
           sum(case when status = 'eligible' then 1 else 0 end) as waiting_other_gap
    from ranked where status_rank = 1 group by 1, 2, 3, 4, 5
"""
_WEEKLY_COUNTED = """
    select week_start, location_id, rule_id, segment, channel, eligible, candidates, suppressed,
           suppressed_no_valid_contact, waiting_other_gap
    from intermediate.int_eligibility_weekly where week_start <= %s
"""


def _weekly(url: str, sql: str, as_of: date) -> dict:
    return {tuple(r.values())[:5]: tuple(r.values())[5:] for r in _rows(url, sql, (as_of,))}


def test_the_funnel_counts_each_week_once_and_rereads_only_weeks_that_changed(reporting: dict) -> None:
    """The funnel's eligibility comes from per-week counts (int_eligibility_weekly): they equal a
    count over every night, and a night re-reads only its own week and weeks whose nights changed,
    so the nightly cost does not grow with the history."""
    url = reporting["url"]
    counted = _weekly(url, _WEEKLY_COUNTED, LATER_NIGHT)
    assert counted and counted == _weekly(url, _WEEKLY_FROM_EVERY_NIGHT, LATER_NIGHT)
    first_week = date(2023, 10, 30)
    funnel_eligible = _rows(
        url, "select sum(eligible) as n from marts.rpt_reactivation_funnel where week_start = %s", (first_week,)
    )[0]["n"]
    assert funnel_eligible == sum(v[0] for k, v in counted.items() if k[0] == first_week)

    # A change inside an earlier night whose week is already counted is not re-read ...
    demote = """update intermediate.int_eligibility_daily set status = 'eligible', reason = 'other_gap_first'
                where as_of = %s and status = 'candidate' returning person_id, rule_id"""
    added_night = FIRST_NIGHT + timedelta(days=1)
    demoted_gaps: list[tuple] = []
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            demoted_gaps = conn.execute(demote, (FIRST_NIGHT,)).fetchall()
        demoted = len(demoted_gaps)
        assert demoted > 0
        _build(url, LATER_NIGHT, select="int_eligibility_weekly")
        assert _weekly(url, _WEEKLY_COUNTED, LATER_NIGHT) == counted
        # ... but a night added to that week (a night whose count never ran) re-counts the week.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """insert into intermediate.int_eligibility_daily
                   select %s, person_id, rule_id, location_id, segment, preferred_channel, is_next_action,
                          status, reason, suppression_reasons
                   from intermediate.int_eligibility_daily where as_of = %s""",
                (added_night, FIRST_NIGHT),
            )
        _build(url, LATER_NIGHT, select="int_eligibility_weekly")
        recounted = _weekly(url, _WEEKLY_COUNTED, LATER_NIGHT)
        assert recounted == _weekly(url, _WEEKLY_FROM_EVERY_NIGHT, LATER_NIGHT)
        first_week_candidates = sum(v[1] for k, v in recounted.items() if k[0] == first_week)
        assert first_week_candidates == sum(v[1] for k, v in counted.items() if k[0] == first_week) - demoted
        assert {r["nights_counted"] for r in _rows(
            url, "select nights_counted from intermediate.int_eligibility_weekly where week_start = %s", (first_week,)
        )} == {2}  # fmt: skip
        # A re-run for the first night counts only the nights up to it.
        _build(url, FIRST_NIGHT, select="int_eligibility_weekly")
        assert _weekly(url, _WEEKLY_COUNTED, FIRST_NIGHT) == _weekly(url, _WEEKLY_FROM_EVERY_NIGHT, FIRST_NIGHT)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("delete from intermediate.int_eligibility_daily where as_of = %s", (added_night,))
            for person_id, rule_id in demoted_gaps:
                conn.execute(
                    """update intermediate.int_eligibility_daily set status = 'candidate', reason = null
                       where as_of = %s and person_id = %s and rule_id = %s""",
                    (FIRST_NIGHT, person_id, rule_id),
                )
        # The rows were edited in place, as no run does: the week is re-counted by a run for it.
        _build(url, FIRST_NIGHT, select="int_eligibility_weekly")
        _build(url, LATER_NIGHT, select="int_eligibility_weekly")
    assert _weekly(url, _WEEKLY_COUNTED, LATER_NIGHT) == counted


def test_bookings_are_credited_inside_the_window_only(reporting: dict) -> None:
    a, b, f = _outcome(reporting, "A"), _outcome(reporting, "B"), _outcome(reporting, "F")
    assert (a["is_booked"], a["booked_on"], a["days_to_booking"], a["appointment_outcome"]) == (
        True,
        date(2023, 11, 3),
        3,
        "showed",
    )
    assert a["decision"] == "booked" and a["decision_source"] == "credited_booking"
    assert a["replies"] == 0, "a message received before the touch is not a reply to it"
    # Day 31 after the first touch: outside the default 30-day window.
    assert not b["is_booked"] and b["booked_on"] is None
    assert b["decision"] == "closed_without_response"
    # No created_at in the extract: the booking is dated by its scheduled day.
    assert (f["is_booked"], f["booked_on"], f["is_no_show"], f["appointment_outcome"]) == (
        True,
        date(2023, 11, 25),
        True,
        "no_show",
    )
    assert f["decision"] == "booked"


def test_every_episode_ends_in_the_decision_its_outcomes_show(reporting: dict) -> None:
    decisions = {label: _outcome(reporting, label)["decision"] for label in "ABCDEF"}
    assert decisions == {
        "A": "booked",
        "B": "closed_without_response",
        "C": "declined",
        "D": "unreachable",
        "E": "opted_out",
        "F": "booked",
    }
    c, d, e = _outcome(reporting, "C"), _outcome(reporting, "D"), _outcome(reporting, "E")
    assert c["is_delivered"] and c["is_replied"], "a declined call reached the person"
    assert not d["is_delivered"] and d["touches_undeliverable"] == 1
    assert e["replied_stop"] and e["opt_out_source"] == "sms_stop"
    people = reporting["people"]
    assert _outcome(reporting, "A")["segment"] == people["A"].segment, "segment from the night the episode started"


def test_funnel_counts_the_contacted_people_exactly(reporting: dict) -> None:
    rows = _rows(
        reporting["url"],
        "select * from marts.rpt_reactivation_funnel where contacted > 0 order by rule_id, segment, channel",
    )
    assert {r["week_start"] for r in rows} == {WEEK_OF_TOUCHES}
    assert {r["iso_week"] for r in rows} == {"2023-W44"}
    assert {r["location_id"] for r in rows} == {reporting["location"]}
    totals = {
        column: sum(r[column] for r in rows)
        for column in ("contacted", "delivered", "replied", "booked", "showed", "no_shows", "decided",
                       "decided_booked", "decided_declined", "decided_not_now", "decided_unreachable",
                       "decided_opted_out", "decided_closed_without_response")
    }  # fmt: skip
    assert totals == {
        "contacted": 6,
        "delivered": 5,  # all but the bounced email
        "replied": 2,  # the STOP reply and the answered call
        "booked": 2,
        "showed": 1,
        "no_shows": 1,
        "decided": 6,
        "decided_booked": 2,
        "decided_declined": 1,
        "decided_not_now": 0,
        "decided_unreachable": 1,
        "decided_opted_out": 1,
        "decided_closed_without_response": 1,
    }
    by_channel = {}
    for row in rows:
        by_channel[row["channel"]] = by_channel.get(row["channel"], 0) + row["contacted"]
    assert by_channel == {"sms": 4, "call": 1, "email": 1}
    if len(rows) == 1:
        assert rows[0]["booked_rate"] == pytest.approx(2 / 6, abs=1e-4)


def test_holdout_lift_compares_both_arms_the_same_way(reporting: dict) -> None:
    (pooled,) = _rows(reporting["url"], "select * from marts.rpt_holdout_lift where rule_id = 'all_rules'")
    # Holdout: H1 booked 5 days after assignment, H2 did not. Contacted arm: A and F booked in the
    # window after the assignment day; B's booking on day 31 does not count for either arm.
    assert (pooled["holdout_n"], pooled["holdout_booked"]) == (2, 1)
    assert (pooled["contacted_n"], pooled["contacted_booked"], pooled["contacted_touched_n"]) == (6, 2, 6)
    assert pooled["assignments_in_open_window"] == 0
    p_h, p_c = 1 / 2, 2 / 6
    se = math.sqrt(p_c * (1 - p_c) / 6 + p_h * (1 - p_h) / 2)
    assert float(pooled["absolute_lift"]) == pytest.approx(p_c - p_h, abs=1e-4)
    assert float(pooled["lift_ci95_low"]) == pytest.approx(p_c - p_h - 1.96 * se, abs=1e-4)
    assert float(pooled["lift_ci95_high"]) == pytest.approx(p_c - p_h + 1.96 * se, abs=1e-4)
    assert not pooled["is_significant"] and not pooled["normal_approximation_ok"]
    (held,) = _rows(
        reporting["url"],
        "select is_booked, booked_on from intermediate.int_holdout_outcomes where person_id = %s",
        (reporting["people"]["H1"].person_id,),
    )
    assert (held["is_booked"], held["booked_on"]) == (True, date(2023, 11, 5))


def test_bookings_per_location_and_week(reporting: dict) -> None:
    rows = {
        r["week_start"]: r
        for r in _rows(
            reporting["url"],
            "select * from marts.rpt_bookings_weekly where location_id = %s",
            (reporting["location"],),
        )
    }
    # Every week from the first night to the as-of date, zeros included.
    assert sorted(rows) == [date(2023, 10, 30) + timedelta(weeks=n) for n in range(6)]
    assert rows[date(2023, 10, 30)]["bookings_from_outreach"] == 1  # A (H1 is held out: not from outreach)
    assert rows[date(2023, 10, 30)]["showed"] == 1
    assert (rows[date(2023, 11, 20)]["bookings"], rows[date(2023, 11, 20)]["bookings_from_outreach"]) == (1, 1)
    assert rows[date(2023, 11, 20)]["no_shows"] == 1
    assert (rows[date(2023, 11, 27)]["bookings"], rows[date(2023, 11, 27)]["bookings_from_outreach"]) == (1, 0)
    assert rows[date(2023, 11, 13)]["bookings"] == 0


def test_location_comparison_and_opt_outs(reporting: dict) -> None:
    url = reporting["url"]
    (here,) = _rows(url, "select * from marts.rpt_location_comparison where location_id = %s", (reporting["location"],))
    assert (here["contacted"], here["booked"], here["opted_out"], here["unreachable"]) == (6, 2, 1, 1)
    assert float(here["booked_rate"]) == pytest.approx(2 / 6, abs=1e-4)
    assert float(here["booked_rate_vs_network"]) == 0  # the only location with outreach is the network
    assert here["booked_rate_rank"] == 1
    # Tonight's people per location, against distinct counts over the night's eligibility rows.
    comparison = _rows(url, "select * from marts.rpt_location_comparison where eligible_people_tonight > 0")
    (night,) = {r["as_of"] for r in comparison}
    counted = """select coalesce(location_id, 'unknown') as location_id, count(distinct person_id) as eligible,
                        count(distinct case when status = 'candidate' then person_id end) as candidates,
                        count(distinct case when status = 'suppressed' and is_next_action then person_id end)
                            as suppressed
                 from intermediate.int_eligibility_daily where as_of = %s group by 1"""
    expected = {
        r["location_id"]: (r["eligible"], r["candidates"], r["suppressed"]) for r in _rows(url, counted, (night,))
    }
    assert len(expected) >= 2 and all(sum(column) > 0 for column in zip(*expected.values(), strict=True))
    assert {
        r["location_id"]: (r["eligible_people_tonight"], r["candidates_tonight"], r["suppressed_tonight"])
        for r in comparison
    } == expected
    opt_outs = _rows(url, "select * from marts.rpt_opt_outs_and_complaints order by channel")
    sms = [r for r in opt_outs if r["channel"] == "sms"]
    assert len(sms) == 1 and sms[0]["week_start"] == WEEK_OF_TOUCHES
    assert (sms[0]["opt_outs"], sms[0]["opt_outs_sms_stop"], sms[0]["opt_outs_other"]) == (1, 1, 0)
    assert sms[0]["touches_made"] == 4
    assert float(sms[0]["opt_out_rate"]) == pytest.approx(0.25)


def test_data_quality_trend_counts_the_latest_gate_run_per_night(reporting: dict) -> None:
    from reactivation.quality.store import ResultRow, ensure_quality_schema, save_run

    url = reporting["url"]
    ensure_quality_schema(url)
    first = [
        ResultRow("patients", "rows_present", "critical", False, 0),
        ResultRow("patients", "phone_valid_share", "warning", True, 0.9),
    ]
    rerun = [
        ResultRow("patients", "rows_present", "critical", True, 400),
        ResultRow("patients", "phone_valid_share", "warning", False, 0.4),
        ResultRow("patients", "phone_valid_share", "warning", False, 0.1, location_id=reporting["location"]),
    ]
    save_run(url, dag_run_id="night-1", as_of=FIRST_NIGHT, results=first, decisions=[])
    save_run(url, dag_run_id="night-1-rerun", as_of=FIRST_NIGHT, results=rerun, decisions=[])
    _build(url, LATER_NIGHT, select="stg_ops__quality_results rpt_data_quality_trend")
    (row,) = _rows(url, "select * from marts.rpt_data_quality_trend")
    assert (row["run_as_of"], row["suite"], row["dag_run_id"]) == (FIRST_NIGHT, "patients", "night-1-rerun")
    assert (row["expectations"], row["failures"], row["critical_failures"], row["warning_failures"]) == (2, 1, 0, 1)
    assert (row["locations_failing"], row["suite_passed"]) == (1, True)
