"""The frequent events DAG, end to end: after a night whose sends went partly wrong, it closes the loop.

The nightly run (``reactivation run``, i.e. ``airflow dags test``) sends through the
provider sandbox while the sandbox accepts requests and then drops the connection
before answering (``accept_then_drop``): the provider has those messages, we do not
know it, and the outbox rows stay ``unknown``. The second practice is in a time zone
where it is night, so its touches are ``deferred`` to its 08:00. Then
``airflow dags test reactivation_events`` runs, twice:

1. at once: every unknown send is reconciled by provider lookup (accepted, with the
   provider's id) and nothing is sent a second time; the night-time practice's touches
   stay deferred; the signed events the sandbox posted to the webhook receiver,
   including those for the reconciled messages and a patient's STOP reply, are in the
   warehouse;
2. when the practice's window has opened (the test cannot wait for morning, so it moves
   that practice's clock: its time zone in the warehouse becomes one where it is now
   daytime, and the deferred rows' window start becomes now): the deferred touches are
   sent, exactly once, re-checking the contact rules, so the patient who replied STOP
   in between is not messaged, nor the one whose "Stop." reached the provider while the
   receiver was down (the webhook is lost; the events run lists it from the provider).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from nightly_setup import generate, isolated_state, release_state, set_timezone, write_sources

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AS_OF = date(2023, 10, 31)
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def zone_at(hour: int) -> str:
    """A fixed-offset IANA zone where it is now about ``hour`` o'clock."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. +11
    return "Etc/GMT" + (f"+{-offset}" if offset < 0 else f"-{offset}")  # the Etc/GMT sign is inverted


def _run(command: list[str], env: dict[str, str], out: Path, timeout: int) -> int:
    """Run with a hard kill of the whole process group on timeout (`airflow dags test` can ignore SIGTERM)."""
    with out.open("a") as handle:
        process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT,
                                   start_new_session=True)  # fmt: skip
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return 124


def _outbox(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """select o.outreach_key, o.location_id, o.channel, o.state, o.provider_message_id, o.person_id,
                      p.phone_e164, o.cancel_reason, p.timezone
               from ops.outbox o left join marts.persons p using (person_id)"""
        ).fetchall()
    keys = ("location_id", "channel", "state", "provider_message_id", "person_id", "phone", "cancel_reason", "timezone")
    return {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}


def _statuses(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("select outreach_key, status from ops.message_status").fetchall())


def _later(url: str) -> None:
    """A quarter of an hour passes: what was accepted so far was accepted that long ago."""
    with psycopg.connect(url) as conn:
        conn.execute("update ops.outbox set updated_at = updated_at - interval '15 minutes' where state = 'accepted'")


def _provider_copies(sandbox) -> Counter:
    """How many messages the provider holds per outreach key (email) or per recipient (SMS)."""
    messages = sandbox.messages()
    copies = Counter(f"email:{m['custom_args'].get('outreach_id')}" for m in messages["sendgrid"])
    copies.update(f"sms:{m['to']}" for m in messages["twilio"] if m.get("direction") != "inbound")
    return copies


def _copies_of(row: dict, key: str, copies: Counter) -> int | None:
    """Messages the provider holds for this touch; None for a staff call (no provider message)."""
    if row["channel"] == "call":
        return None
    return copies[f"email:{key}"] if row["channel"] == "email" else copies[f"sms:{row['phone']}"]


@pytest.fixture(scope="module")
def events(request) -> Iterator[dict]:
    from reactivation.local_services import SANDBOX_FROM_NUMBER, local_providers, provider_connections
    from reactivation.nightly_run import airflow_env
    from reactivation.sandbox.clients import SandboxControl
    from reactivation.settings import Settings
    from reactivation.warehouse import ensure_schema, warehouse_url

    tmp, patch = isolated_state("events")
    settings = Settings()
    generated = tmp / "generated"
    generate(generated, patients=300, locations=2, seed=11, as_of=AS_OF)
    zones = {"loc_01": zone_at(14), "loc_02": zone_at(2)}  # afternoon at one practice, night at the other
    for loc, zone in zones.items():
        set_timezone(generated / loc, zone)
    sources = write_sources(tmp / "sources.yml", {loc: generated / loc for loc in zones})
    logs = tmp / "logs"
    logs.mkdir()
    try:
        with warehouse_url(settings) as url, local_providers(url) as providers:
            ensure_schema(url)
            env = airflow_env(settings, url, sources)
            env.update(providers)
            env["WAREHOUSE_URL"] = url  # `reactivation run` uses this warehouse and these providers
            with SandboxControl(providers["REACTIVATION_SANDBOX_URL"]) as sandbox:
                # The provider accepts and stores, then the connection drops before it answers.
                sandbox.add_fault("accept_then_drop", provider="sendgrid", count=1)
                sandbox.add_fault("accept_then_drop", provider="twilio", count=2)
                # And the webhook receiver is down for SMS status callbacks all night (a dead port).
                night_env = {
                    **env,
                    "AIRFLOW_CONN_SMS_DEFAULT": provider_connections(
                        providers["REACTIVATION_SANDBOX_URL"], "http://127.0.0.1:9"
                    )["AIRFLOW_CONN_SMS_DEFAULT"],
                }
                started = time.monotonic()
                nightly = _run([str(BIN / "reactivation"), "run", "--as-of", AS_OF.isoformat(), "--timeout", "400"],
                               night_env, logs / "nightly.out", timeout=450)  # fmt: skip
                timings = {"nightly": time.monotonic() - started}
                assert nightly == 0, (logs / "nightly.out").read_text()[-3000:]
                sandbox.drain(15)
                after_night = _outbox(url)
                copies_after_night = _provider_copies(sandbox)
                statuses_after_night = _statuses(url)
                _later(url)

                # A patient of the night-time practice, with a deferred SMS, replies STOP in the meantime.
                stopper = next(
                    {"key": key, **row} for key, row in after_night.items()
                    if row["timezone"] == zones["loc_02"] and row["channel"] == "sms" and row["state"] == "deferred"
                )  # fmt: skip
                sandbox.inbound_sms(from_=stopper["phone"], to=SANDBOX_FROM_NUMBER, body="STOP")
                # Another one does while the receiver is down: Twilio never retries that webhook.
                missed = next(
                    {"key": key, **row} for key, row in after_night.items()
                    if row["timezone"] == zones["loc_02"] and row["channel"] == "sms" and row["state"] == "deferred"
                    and row["phone"] != stopper["phone"]
                )  # fmt: skip
                sandbox.inbound_sms(
                    from_=missed["phone"], to=SANDBOX_FROM_NUMBER, body="Stop.", url="http://127.0.0.1:9/twilio/inbound"
                )
                env["REACTIVATION_INBOUND_CATCH_UP_QUIET_SECONDS"] = "0"  # the test cannot wait for the quiet period

                events_dag = [str(BIN / "airflow"), "dags", "test", "reactivation_events"]
                started = time.monotonic()
                first = _run(events_dag, env, logs / "events-1.out", timeout=300)
                timings["events_1"] = time.monotonic() - started
                assert first == 0, (logs / "events-1.out").read_text()[-3000:]
                sandbox.drain(15)
                after_first = _outbox(url)
                copies_after_first = _provider_copies(sandbox)
                statuses = _statuses(url)
                with psycopg.connect(url) as conn:
                    events = conn.execute(
                        "select provider, event_type, outreach_key from ops.provider_events"
                    ).fetchall()
                    opt_outs = conn.execute(
                        "select person_id, channel, status from ops.opt_outs where person_id = %s",
                        (stopper["person_id"],),
                    ).fetchall()
                    missed_opt_outs = conn.execute(
                        "select channel, status from ops.opt_outs where person_id = %s", (missed["person_id"],)
                    ).fetchall()
                    counters = dict(conn.execute("select name, value from ops.webhook_counters").fetchall())
                    attempts = dict(
                        conn.execute(
                            "select outreach_key, next_step from ops.outreach_attempts "
                            "where next_step like 'reconciled%'"
                        ).fetchall()
                    )

                    # Morning at the second practice: its clock moves forward to a time inside the window.
                    conn.execute(
                        "update marts.persons set timezone = %s where home_location_id = 'loc_02'", (zone_at(10),)
                    )
                    conn.execute(
                        "update ops.outbox set not_before = now() - interval '1 minute' where state = 'deferred'"
                    )
                _later(url)
                started = time.monotonic()
                second = _run(events_dag, env, logs / "events-2.out", timeout=300)
                timings["events_2"] = time.monotonic() - started
                assert second == 0, (logs / "events-2.out").read_text()[-3000:]
                sandbox.drain(15)
                yield {
                    "after_night": after_night,
                    "copies_after_night": copies_after_night,
                    "after_first": after_first,
                    "copies_after_first": copies_after_first,
                    "events": events,
                    "statuses": statuses,
                    "opt_outs": opt_outs,
                    "attempts": attempts,
                    "stopper": stopper,
                    "missed": missed,
                    "missed_opt_outs": missed_opt_outs,
                    "counters": counters,
                    "statuses_after_night": statuses_after_night,
                    "final_statuses": _statuses(url),
                    "after_second": _outbox(url),
                    "copies_after_second": _provider_copies(sandbox),
                    "timings": timings,
                    "night_zone": zones["loc_02"],
                }
    finally:
        release_state(tmp, patch, request)


def test_the_night_left_unknown_sends_and_deferred_touches(events) -> None:
    night = events["after_night"]
    states = Counter((row["channel"], row["state"]) for row in night.values())
    assert states[("email", "unknown")] >= 1 and states[("sms", "unknown")] == 2, states
    # People live where their home practice is: those of the night-time practice are asleep.
    asleep = [row for row in night.values() if row["timezone"] == events["night_zone"]]
    assert asleep and {row["state"] for row in asleep} == {"deferred"}, Counter(row["state"] for row in asleep)
    for key, row in night.items():
        if row["state"] == "unknown":
            assert _copies_of(row, key, events["copies_after_night"]) == 1, "the provider has the message"


def test_unknown_sends_are_reconciled_by_lookup_not_resent(events) -> None:
    unknown = [key for key, row in events["after_night"].items() if row["state"] == "unknown"]
    for key in unknown:
        row = events["after_first"][key]
        assert row["state"] == "accepted" and row["provider_message_id"], (key, row)
        assert events["attempts"].get(key) == "reconciled: the provider had accepted it"
        assert _copies_of(row, key, events["copies_after_first"]) == 1, "no duplicate message"
    assert events["copies_after_first"] == events["copies_after_night"], "the first events run sent nothing new"


def test_deferred_touches_wait_for_their_window(events) -> None:
    deferred = [key for key, row in events["after_night"].items() if row["timezone"] == events["night_zone"]]
    assert deferred and all(events["after_first"][key]["state"] == "deferred" for key in deferred)


def test_provider_events_and_replies_are_in_the_warehouse(events) -> None:
    kinds = Counter((provider, kind) for provider, kind, _ in events["events"])
    assert kinds[("sendgrid", "delivered")] >= 1 and kinds[("twilio", "delivered")] >= 1, kinds
    emails = [
        key for key, row in events["after_first"].items() if row["channel"] == "email" and row["state"] == "accepted"
    ]
    assert emails and all(events["statuses"].get(key) == "delivered" for key in emails), "reconciled ones too"
    assert ("sms", "opt_out") in {(channel, status) for _, channel, status in events["opt_outs"]}


def test_sms_statuses_the_receiver_missed_are_fetched_from_the_provider(events) -> None:
    night_sms = [
        key for key, row in events["after_night"].items() if row["channel"] == "sms" and row["state"] == "accepted"
    ]
    assert night_sms
    assert not any(key in events["statuses_after_night"] for key in night_sms), "the receiver was down for them"
    assert all(events["statuses"].get(key) == "delivered" for key in night_sms)


def test_a_stop_the_receiver_missed_is_caught_up_from_the_provider(events) -> None:
    assert ("sms", "opt_out") in set(events["missed_opt_outs"])
    counters = events["counters"]
    assert counters.get("catch_up.accepted", 0) >= 2 and counters.get("catch_up.opt_out", 0) >= 1, counters
    assert counters.get("opt_out", 0) >= 1, "the STOP the receiver got is counted as a webhook delivery"


def test_every_accepted_message_ends_with_its_delivery_recorded(events) -> None:
    accepted = [
        key for key, row in events["after_second"].items() if row["state"] == "accepted" and row["channel"] != "call"
    ]
    assert accepted and {events["final_statuses"].get(key) for key in accepted} == {"delivered"}


def test_deferred_touches_are_sent_once_when_the_window_opens(events) -> None:
    stopper = events["stopper"]
    deferred = [key for key, row in events["after_night"].items() if row["timezone"] == events["night_zone"]]
    assert deferred
    for key in deferred:
        row = events["after_second"][key]
        if key == stopper["key"] or (row["channel"] == "sms" and row["phone"] == events["missed"]["phone"]):
            assert row["state"] == "cancelled" and row["cancel_reason"] == "opted_out", row
            assert _copies_of(row, key, events["copies_after_second"]) == 0, "STOP took effect before the send"
            continue
        assert row["state"] == "accepted", (key, row)
        assert _copies_of(row, key, events["copies_after_second"]) in (None, 1), "sent exactly once"
    print("timings (s):", {k: round(v, 1) for k, v in events["timings"].items()})
