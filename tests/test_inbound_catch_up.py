"""Replies the webhook receiver missed are caught up from the provider and handled as the receiver would.

Real provider sandbox over HTTP (the official Twilio SDK lists its Messages), real embedded
PostgreSQL, and the real receiver on a real port where a test needs it up. "Receiver down" is a
dead port as the inbound webhook URL: the sandbox's post fails and, as with Twilio, is not retried.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from outreach_fixtures import Person, build_warehouse

from reactivation.local_services import (
    SANDBOX_ACCOUNT_SID,
    SANDBOX_AUTH_TOKEN,
    SANDBOX_FROM_NUMBER,
    _Receiver,
    provider_connections,
)
from reactivation.sandbox.clients import SandboxControl
from reactivation.sandbox.server import SandboxServer
from reactivation.webhooks.app import create_app
from reactivation.webhooks.inbound_catch_up import QUIET_AFTER_ENV, catch_up_inbound_sms, our_numbers
from reactivation.webhooks.schema import ensure_webhook_schema

pytestmark = pytest.mark.timeout(60)

AS_OF = date(2026, 11, 2)
NOON_CHICAGO = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
DEAD_RECEIVER = "http://127.0.0.1:9"
P1_PHONE, P2_PHONE = "+14025551001", "+14025551002"
PEOPLE = [
    Person("p1", phone=P1_PHONE, channels="sms", household_id="h1"),
    Person("p2", phone=P2_PHONE, channels="sms", household_id="h2"),
]
NOW = timedelta(0)  # quiet_after for catching up what the sandbox received a moment ago


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(
        twilio_accounts={SANDBOX_ACCOUNT_SID: SANDBOX_AUTH_TOKEN}, webhook_retries=0, delivery_delay=0.01
    ) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_server: SandboxServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox_server.url, timeout=10) as control:
        control.reset()
        for name, value in provider_connections(sandbox_server.url, DEAD_RECEIVER).items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("REACTIVATION_TWILIO_AUTH_TOKEN", raising=False)
        monkeypatch.delenv(QUIET_AFTER_ENV, raising=False)
        monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
        yield control


@pytest.fixture
def wh(warehouse: str) -> str:
    build_warehouse(warehouse, PEOPLE)
    ensure_webhook_schema(warehouse)
    return warehouse


@pytest.fixture
def receiver(wh: str, sandbox: SandboxControl) -> Iterator[str]:
    """The receiver up, with the sandbox's replies going to it."""
    app = create_app(
        wh, sendgrid_public_key=sandbox.public_key(), twilio_auth_token=SANDBOX_AUTH_TOKEN, public_base_url=None
    )
    server = _Receiver(app)
    server.start()
    try:
        yield f"{server.url}/twilio/inbound"
    finally:
        server.stop()


def reply(sandbox: SandboxControl, phone: str, body: str, url: str = f"{DEAD_RECEIVER}/twilio/inbound") -> str:
    """A patient texts our number; the sandbox posts the webhook (by default to the dead receiver)."""
    sid = sandbox.inbound_sms(phone, SANDBOX_FROM_NUMBER, body, url=url, account_sid=SANDBOX_ACCOUNT_SID)
    assert sandbox.drain(10)
    return sid


def q(url: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def latest_opt(url: str, person_id: str) -> str | None:
    rows = q(
        url,
        "select status from ops.opt_outs where person_id = %s and channel = 'sms' order by recorded_at desc limit 1",
        person_id,
    )
    return rows[0][0] if rows else None


def counters(url: str) -> dict[str, int]:
    return dict(q(url, "select name, value from ops.webhook_counters"))


def table_counts(url: str) -> dict[str, int]:
    tables = ("provider_events", "inbound_messages", "staff_queue", "opt_outs", "webhook_counters")
    return {t: q(url, f"select count(*) from ops.{t}")[0][0] for t in tables}


def plan_and_send(url: str) -> list[dict]:
    """Plan tonight's touches (one SMS per person) and send them as the events DAG's follow-up does."""
    import dataclasses

    from reactivation.outreach.approval import decide_batches
    from reactivation.outreach.config import load_config
    from reactivation.outreach.delivery import send_one_batch
    from reactivation.outreach.planning import plan_outreach

    plan_outreach(url, as_of=AS_OF, dag_run_id="run-1", config=dataclasses.replace(load_config(), holdout_share=0.0))
    decide_batches(url, as_of=AS_OF, decision="approve", decided_by="test")
    batches = [r[0] for r in q(url, "select batch_id from ops.batches order by 1")]
    return [send_one_batch(url, b, clock=lambda: NOON_CHICAGO, sleep=lambda s: None) for b in batches]


def test_the_send_clock_setting_decides_the_sending_window(
    wh: str, sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REACTIVATION_SEND_CLOCK is the send stage's now: 02:00 in Chicago defers, noon sends."""
    import dataclasses

    from reactivation.outreach.approval import decide_batches
    from reactivation.outreach.config import load_config
    from reactivation.outreach.delivery import send_one_batch
    from reactivation.outreach.planning import plan_outreach
    from reactivation.settings import get_settings

    plan_outreach(wh, as_of=AS_OF, dag_run_id="run-1", config=dataclasses.replace(load_config(), holdout_share=0.0))
    decide_batches(wh, as_of=AS_OF, decision="approve", decided_by="test")
    (batch,) = [r[0] for r in q(wh, "select batch_id from ops.batches order by 1")]
    monkeypatch.setenv("REACTIVATION_SEND_CLOCK", "2026-11-02T08:00:00Z")
    night = send_one_batch(wh, batch, sleep=lambda s: None)
    assert night["deferred"] == 2 and q(wh, "select count(*) from ops.outbox where state = 'accepted'")[0][0] == 0
    deferred_to = q(wh, "select distinct not_before from ops.outbox where state = 'deferred'")
    assert deferred_to == [(datetime(2026, 11, 2, 14, 0, tzinfo=UTC),)]  # 08:00 in Chicago
    monkeypatch.setenv("REACTIVATION_SEND_CLOCK", "2026-11-02T18:00:00+00:00")
    get_settings.cache_clear()  # settings are read once per process
    send_one_batch(wh, batch, sleep=lambda s: None)
    assert q(wh, "select count(*) from ops.outbox where state = 'accepted'")[0][0] == 2


def test_the_send_clock_is_refused_when_a_connection_leaves_this_machine(
    wh: str, sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A made-up now is for the local sandbox only: pointed at a real API, nothing is sent."""
    import dataclasses

    from reactivation.outreach.approval import decide_batches
    from reactivation.outreach.config import load_config
    from reactivation.outreach.delivery import SendClockRefused, send_clock, send_one_batch
    from reactivation.outreach.planning import plan_outreach
    from reactivation.settings import get_settings

    monkeypatch.setenv("REACTIVATION_SEND_CLOCK", "2026-11-02T18:00:00Z")
    get_settings.cache_clear()
    assert send_clock("sms") == datetime(2026, 11, 2, 18, 0, tzinfo=UTC)  # the sandbox is on 127.0.0.1
    plan_outreach(wh, as_of=AS_OF, dag_run_id="run-1", config=dataclasses.replace(load_config(), holdout_share=0.0))
    decide_batches(wh, as_of=AS_OF, decision="approve", decided_by="test")
    (batch,) = [r[0] for r in q(wh, "select batch_id from ops.batches order by 1")]
    monkeypatch.setenv("AIRFLOW_CONN_SMS_DEFAULT", "sms://AC123:token@api.twilio.com?from_number=%2B15550001111")
    with pytest.raises(SendClockRefused, match="sms_default points beyond this machine"):
        send_one_batch(wh, batch, sleep=lambda s: None)
    assert q(wh, "select count(*) from ops.outbox where state = 'accepted'")[0][0] == 0
    assert send_clock("call_list") == datetime(2026, 11, 2, 18, 0, tzinfo=UTC)  # staff, not patients, read it
    monkeypatch.delenv("REACTIVATION_SEND_CLOCK")
    get_settings.cache_clear()
    assert send_clock("sms") is None  # unset: the wall clock, wherever the connection points


def test_a_local_run_sends_inside_every_us_sending_window() -> None:
    from zoneinfo import ZoneInfo

    from reactivation.nightly_run import local_send_clock

    instant = local_send_clock(datetime(2026, 12, 3, 7, 45, tzinfo=UTC))
    assert instant == datetime(2026, 12, 3, 18, 0, tzinfo=UTC)
    for zone in ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Anchorage"):
        for day in (datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)):  # winter and summer
            local = local_send_clock(day).astimezone(ZoneInfo(zone))
            assert 8 <= local.hour < 21, (zone, local)


def test_a_stop_sent_while_the_receiver_was_down_opts_out_before_the_next_send(
    wh: str, sandbox: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sid = reply(sandbox, P1_PHONE, "Stop.")
    [post] = [w for w in sandbox.webhooks() if sid in w["message_ids"]]
    assert not post["ok"], "the receiver was down and the post is not retried"
    assert latest_opt(wh, "p1") is None

    # Younger than the quiet period: left to the webhook (which Twilio posts within seconds).
    assert catch_up_inbound_sms(wh)["listed"] == 0

    counts = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert counts["listed"] == 1 and counts["recorded"] == 1 and counts["keyword_stop"] == 1, counts
    assert latest_opt(wh, "p1") == "opt_out" and latest_opt(wh, "p2") is None
    assert q(wh, "select provider_message_id, person_id, keyword, reply, source from ops.inbound_messages") == [
        (sid, "p1", "stop", "none", "catch_up")
    ]
    assert counters(wh) == {"catch_up.accepted": 1, "catch_up.opt_out": 1}, "not counted as webhook deliveries"

    summaries = plan_and_send(wh)
    assert [s["cancelled"] for s in summaries] == [{"opted_out": 1}], summaries
    assert q(wh, "select person_id, state, cancel_reason from ops.outbox order by 1") == [
        ("p1", "cancelled", "opted_out"),
        ("p2", "accepted", None),
    ]
    outbound = [m["to"] for m in sandbox.messages("twilio")["twilio"] if m["direction"] != "inbound"]
    assert outbound == [P2_PHONE], "nothing was sent to the person who replied STOP; no late confirmation either"
    logged = caplog.text
    assert P1_PHONE not in logged and P1_PHONE[2:] not in logged and "Stop." not in logged


def test_running_the_catch_up_twice_records_nothing_twice(wh: str, sandbox: SandboxControl) -> None:
    reply(sandbox, P1_PHONE, "STOP")
    reply(sandbox, P2_PHONE, "Can I come in on Friday?")
    first = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert (first["listed"], first["recorded"], first["keyword_stop"], first["keyword_other"]) == (2, 2, 1, 1)
    before = table_counts(wh)
    totals = counters(wh)
    second = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert (second["listed"], second["already_recorded"], second["recorded"]) == (2, 2, 0), second
    assert table_counts(wh) == before and counters(wh) == totals
    # The staff see the reply with the time the patient sent it, not the time we caught it up.
    [(person, body, received_at)] = q(wh, "select person_id, body, received_at from ops.staff_queue")
    assert person == "p2" and body == "Can I come in on Friday?"
    assert received_at <= datetime.now(UTC) and received_at.microsecond == 0, "the provider's date_sent"


def test_a_reply_the_receiver_got_is_not_processed_again(wh: str, sandbox: SandboxControl, receiver: str) -> None:
    reply(sandbox, P1_PHONE, "STOP", url=receiver)
    reply(sandbox, P2_PHONE, "Can I come in on Friday?", url=receiver)
    assert all(w["ok"] for w in sandbox.webhooks())
    before, totals = table_counts(wh), counters(wh)
    assert totals["accepted"] == 2 and totals["opt_out"] == 1
    assert q(wh, "select keyword, reply, source from ops.inbound_messages order by id") == [
        ("stop", "stop_confirmation", "webhook"),
        ("other", "none", "webhook"),
    ]
    counts = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert (counts["listed"], counts["already_recorded"], counts["recorded"]) == (2, 2, 0), counts
    assert table_counts(wh) == before and counters(wh) == totals


def test_start_after_stop_resubscribes_in_order(wh: str, sandbox: SandboxControl) -> None:
    reply(sandbox, P1_PHONE, "STOP")
    time.sleep(1.1)  # the provider's times have whole seconds
    reply(sandbox, P1_PHONE, "start")
    counts = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert (counts["recorded"], counts["keyword_stop"], counts["keyword_start"]) == (2, 1, 1), counts
    assert q(wh, "select status from ops.opt_outs where person_id = 'p1' order by recorded_at") == [
        ("opt_out",),
        ("opt_in",),
    ]
    assert latest_opt(wh, "p1") == "opt_in"
    assert counters(wh) == {"catch_up.accepted": 2, "catch_up.opt_out": 1, "catch_up.opt_in": 1}


def test_a_missed_stop_does_not_override_a_later_start_the_receiver_got(
    wh: str, sandbox: SandboxControl, receiver: str
) -> None:
    reply(sandbox, P1_PHONE, "STOP")  # receiver down
    time.sleep(1.1)
    reply(sandbox, P1_PHONE, "START", url=receiver)  # back up
    assert latest_opt(wh, "p1") == "opt_in"
    counts = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert (counts["recorded"], counts["superseded"]) == (1, 1), counts
    assert latest_opt(wh, "p1") == "opt_in", "the patient's last word was START"
    assert q(wh, "select keyword, source from ops.inbound_messages order by received_at") == [
        ("stop", "catch_up"),
        ("start", "webhook"),
    ]
    assert counters(wh)["catch_up.superseded"] == 1


def test_a_late_stop_then_a_live_stop_is_not_confirmed_twice(wh: str, sandbox: SandboxControl, receiver: str) -> None:
    reply(sandbox, P1_PHONE, "STOP")  # receiver down; Twilio itself confirmed it on the number
    catch_up_inbound_sms(wh, quiet_after=NOW)
    reply(sandbox, P1_PHONE, "STOP", url=receiver)
    assert q(wh, "select reply, source from ops.inbound_messages order by id") == [
        ("none", "catch_up"),
        ("none", "webhook"),
    ]


def test_our_numbers_come_from_the_sms_connection() -> None:
    assert our_numbers({"from_number": "+15005550006"}) == ["+15005550006"]
    assert our_numbers({"from_number": "+15005550006", "inbound_numbers": "+15005550007, +15005550006"}) == [
        "+15005550006",
        "+15005550007",
    ]
    assert our_numbers({"messaging_service_sid": "MG" + "0" * 32}) == []


def test_without_an_sms_connection_there_is_nothing_to_catch_up(wh: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SMS_DEFAULT", raising=False)
    counts = catch_up_inbound_sms(wh, quiet_after=NOW)
    assert counts["no_sms_connection"] == 1 and counts["listed"] == 0
    assert table_counts(wh)["inbound_messages"] == 0
