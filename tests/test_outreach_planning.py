"""Outreach planning on a real warehouse: cadences, caps, re-runs, gate blocks, decisions, quiet hours."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import psycopg
import pytest
from outreach_fixtures import Person, build_warehouse

from reactivation.outreach.approval import BatchDecisionError, decide_batches, show_batch
from reactivation.outreach.config import OutreachConfigError, load_config, parse_config
from reactivation.outreach.planning import plan_outreach
from reactivation.outreach.sending import defer_until, next_window_start

AS_OF = date(2026, 11, 2)


def _config(holdout_share: float = 0.0):
    return dataclasses.replace(load_config(), holdout_share=holdout_share)


def _plan(url: str, as_of: date = AS_OF, config=None, **kwargs):
    return plan_outreach(url, as_of=as_of, dag_run_id=f"run-{as_of}", config=config or _config(), **kwargs)


def _outbox(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select person_id, channel, state, batch_id from ops.outbox order by person_id, channel"
        ).fetchall()


def test_first_touch_follows_the_cadence_and_policy_approves(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1"), Person("p2", location_id="loc_b", rule_id="missed_appointment")])
    summary = _plan(warehouse)
    assert summary.episodes_started == 2
    assert _outbox(warehouse) == [
        ("p1", "sms", "planned", "2026-11-02:loc_a:sms"),
        ("p2", "sms", "planned", "2026-11-02:loc_b:sms"),
    ]
    batch = show_batch(warehouse, "2026-11-02:loc_a:sms")
    assert batch["status"] == "approved" and batch["decided_by"] == "policy:routine_recalls"
    assert batch["manifest"]["by_rule"] == {"dormant": 1}
    sample = batch["manifest"]["samples"][0]
    assert sample["body"].startswith("Riverside Dental: It has been a while since your last visit.")
    assert "+1402" not in str(batch["manifest"]), "no contact details in the manifest"


def test_rerun_of_the_same_night_plans_nothing_new(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1"), Person("p2")])
    _plan(warehouse)
    before = _outbox(warehouse)
    again = _plan(warehouse)
    assert again.already_planned and again.touches_planned == 0
    assert _outbox(warehouse) == before


def test_next_touch_waits_for_its_day_offset(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1")])
    _plan(warehouse, date(2026, 11, 2))  # day 0: sms
    assert _plan(warehouse, date(2026, 11, 3)).touches_planned == 0  # day 1: nothing due
    _plan(warehouse, date(2026, 11, 4))  # day 2: email
    assert [row[1] for row in _outbox(warehouse)] == ["email", "sms"]


def test_household_and_person_caps_across_locations(warehouse: str) -> None:
    people = [
        Person("a1", location_id="loc_a", household_id="h1", priority_score=90),
        Person("a2", location_id="loc_b", household_id="h1", priority_score=80),  # same household, other location
        Person("b1", location_id="loc_a", household_id="h2"),
    ]
    build_warehouse(warehouse, people)
    summary = _plan(warehouse)
    assert summary.capped == {"household_day": 1}
    assert [row[0] for row in _outbox(warehouse)] == ["a1", "b1"], "one touch per household per day"


def test_weekly_cap_counts_touches_already_made(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1")])
    with psycopg.connect(warehouse) as conn:
        for day in (28, 30, 31):
            conn.execute(
                "insert into ops.outreach_touches values (%s, 'p1', 'p1', 'annual_wellness', 'sms', %s, 'accepted')",
                (f"k{day}", datetime(2026, 10, day, 15, tzinfo=UTC)),
            )
    summary = _plan(warehouse)
    assert summary.capped == {"person_week": 1} and _outbox(warehouse) == []


def test_channel_falls_back_when_the_cadence_channel_is_not_usable(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1", channels="email")])  # opted out of sms / no valid mobile
    _plan(warehouse)
    assert [row[1] for row in _outbox(warehouse)] == ["email"]


def test_gate_block_blocks_batches_in_scope_and_writes_no_outbox(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1", location_id="loc_a"), Person("p2", location_id="loc_b")])
    summary = _plan(warehouse, blocked_locations={"loc_a": ["loc_a's latest extract is 9 days old"]})
    assert summary.batch_status == {"blocked": 1, "approved": 1}
    assert [row[0] for row in _outbox(warehouse)] == ["p2"]
    batch = show_batch(warehouse, "2026-11-02:loc_a:sms")
    assert batch["status"] == "blocked" and batch["blocked_reasons"] == ["loc_a's latest extract is 9 days old"]
    with psycopg.connect(warehouse) as conn:
        touches = conn.execute("select person_id, touches_planned from ops.episodes order by 1").fetchall()
    assert touches == [("p1", 0), ("p2", 1)], "a blocked touch does not advance the episode"


def test_global_block_blocks_everything(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1", location_id="loc_a"), Person("p2", location_id="loc_b")])
    summary = _plan(warehouse, blocked_global=["duplicate patient keys in staging"])
    assert summary.batch_status == {"blocked": 2}
    assert _outbox(warehouse) == []
    with psycopg.connect(warehouse) as conn:
        written = conn.execute("select (select count(*) from ops.episodes), (select count(*) from ops.holdout)")
        assert written.fetchone() == (0, 0), "untrusted marts start no episode and assign no holdout arm"


def test_global_block_plans_blocked_batches_even_when_a_mart_is_missing(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1", location_id="loc_a")])
    with psycopg.connect(warehouse) as conn:
        conn.execute("drop table marts.outreach_suppressions")
    summary = _plan(warehouse, blocked_global=["marts.outreach_suppressions could not be checked"])
    assert summary.batch_status == {"blocked": 1}
    assert show_batch(warehouse, "2026-11-02:loc_a:sms")["blocked_reasons"] == [
        "marts.outreach_suppressions could not be checked"
    ]


def test_rejected_batch_cancels_its_touches(warehouse: str) -> None:
    build_warehouse(warehouse, [Person("p1", priority_score=10)])
    config = dataclasses.replace(parse_config({**_config_dict(), "approval_policies": []}), holdout_share=0.0)
    plan_outreach(warehouse, as_of=AS_OF, dag_run_id="r", config=config)
    assert show_batch(warehouse, "2026-11-02:loc_a:sms")["status"] == "awaiting_approval"
    assert decide_batches(warehouse, batch_ids=["2026-11-02:loc_a:sms"], decision="reject", decided_by="ops") == [
        "2026-11-02:loc_a:sms"
    ]
    assert _outbox(warehouse) == [("p1", "sms", "cancelled", "2026-11-02:loc_a:sms")]
    with pytest.raises(BatchDecisionError, match="already decided"):
        decide_batches(warehouse, batch_ids=["2026-11-02:loc_a:sms"], decision="approve", decided_by="ops")


def _config_dict() -> dict:
    import yaml

    from reactivation.outreach.config import DEFAULT_PATH

    return yaml.safe_load(DEFAULT_PATH.read_text())


def test_config_errors_name_the_key() -> None:
    data = _config_dict()
    data["cadences"]["standard"]["touches"][0]["channel"] = "pigeon"
    with pytest.raises(OutreachConfigError, match="unknown channel 'pigeon'"):
        parse_config(data)


@pytest.mark.parametrize(
    ("now_utc", "tz", "expected"),
    [
        (datetime(2026, 11, 2, 15, 0, tzinfo=UTC), "America/Chicago", None),  # 09:00 local: inside
        (datetime(2026, 11, 2, 13, 0, tzinfo=UTC), "America/Chicago", datetime(2026, 11, 2, 14, 0, tzinfo=UTC)),
        (datetime(2026, 11, 2, 13, 0, tzinfo=UTC), "America/New_York", None),  # 08:00 local: the window opens
        (datetime(2026, 11, 3, 3, 30, tzinfo=UTC), "America/Los_Angeles", None),  # 19:30 local
        (datetime(2026, 11, 3, 3, 30, tzinfo=UTC), "America/New_York", datetime(2026, 11, 3, 13, 0, tzinfo=UTC)),
    ],
)
def test_quiet_hours_across_time_zones(now_utc, tz, expected) -> None:
    assert next_window_start(now_utc, tz, load_config()) == expected


@pytest.mark.parametrize(
    ("now_utc", "tz", "expected"),
    [
        # 09:00 in Chicago, today's cap used up: tomorrow 08:00 local, not "now" (which retried every run).
        (datetime(2026, 11, 2, 15, 0, tzinfo=UTC), "America/Chicago", datetime(2026, 11, 3, 14, 0, tzinfo=UTC)),
        # 23:30 in New York on the 2nd: the next local day is the 3rd.
        (datetime(2026, 11, 3, 4, 30, tzinfo=UTC), "America/New_York", datetime(2026, 11, 3, 13, 0, tzinfo=UTC)),
    ],
)
def test_a_touch_over_todays_cap_waits_for_the_next_local_day(now_utc, tz, expected) -> None:
    assert defer_until(now_utc, tz, load_config(), over_cap=True) == expected
    assert defer_until(now_utc, tz, load_config(), over_cap=False) == next_window_start(now_utc, tz, load_config())


def test_holdout_is_recorded_never_contacted_and_stable(warehouse: str) -> None:
    people = [Person(f"p{i:03d}", household_id=f"h{i:03d}") for i in range(200)]
    build_warehouse(warehouse, people)
    summary = _plan(warehouse, config=_config(holdout_share=0.3))
    with psycopg.connect(warehouse) as conn:
        arms = dict(conn.execute("select arm, count(*) from ops.holdout group by arm").fetchall())
        contacted_holdout = conn.execute(
            "select count(*) from ops.outbox o join ops.holdout h on h.person_id = o.person_id and h.arm = 'holdout'"
        ).fetchone()[0]
    assert arms["holdout"] + arms["contacted"] == 200
    assert 40 <= arms["holdout"] <= 80, "about 30% held out"
    assert summary.held_out == arms["holdout"]
    assert contacted_holdout == 0, "nobody in the holdout is contacted"
    assert summary.touches_planned == arms["contacted"]
    later = _plan(warehouse, date(2026, 11, 4), config=_config(holdout_share=0.3))
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from ops.holdout").fetchone()[0] == 200, "assignment happens once"
    assert later.held_out == arms["holdout"]
