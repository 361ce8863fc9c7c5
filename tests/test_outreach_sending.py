"""Sending against the provider sandbox (a real HTTP server, the official SDKs): one test per invariant.

- a crash after the provider accepted and before our record (in process, and a real SIGKILL of the
  sending process while the provider holds the request it goes on to accept), then a rerun: no duplicate;
- a rerun of the same logical date: no new sends;
- 429 and 5xx storms: everything planned is sent exactly once;
- an opt-out or a booking between planning and sending: not sent;
- quiet hours across time zones: deferred to the window, then sent;
- caps across two locations and a household at send time;
- a rejected batch sends nothing.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, date, datetime

import psycopg
import pytest
from outreach_fixtures import Person, build_warehouse

from reactivation.local_services import provider_connections
from reactivation.outreach.approval import decide_batches
from reactivation.outreach.config import load_config, parse_config
from reactivation.outreach.delivery import build_provider, send_one_batch
from reactivation.outreach.planning import plan_outreach
from reactivation.sandbox.clients import SandboxControl
from reactivation.sandbox.server import SandboxServer

AS_OF = date(2026, 11, 2)
NOON_CHICAGO = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def sandbox(monkeypatch):
    with SandboxServer(delivery_delay=0.01) as server:
        for name, value in provider_connections(server.url, "http://127.0.0.1:9").items():
            monkeypatch.setenv(name, value)
        with SandboxControl(server.url) as control:
            yield control


def _config():
    return dataclasses.replace(load_config(), holdout_share=0.0)


def _plan(url: str, as_of: date = AS_OF, config=None) -> None:
    plan_outreach(url, as_of=as_of, dag_run_id=f"run-{as_of}", config=config or _config())


def _batches(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("select batch_id from ops.batches order by 1")]


def _send_all(url: str, now: datetime = NOON_CHICAGO, **overrides) -> list[dict]:
    return [
        send_one_batch(url, batch_id, clock=lambda: now, sleep=lambda s: None, **overrides)
        for batch_id in _batches(url)
    ]


def _sent(control: SandboxControl) -> Counter:
    """How many times each outreach key reached a provider (SendGrid custom args; Twilio by recipient)."""
    messages = control.messages()
    keys = Counter(m["custom_args"].get("outreach_id") for m in messages["sendgrid"])
    keys.update(f"sms:{m['to']}" for m in messages["twilio"])
    return keys


def _states(url: str) -> Counter:
    with psycopg.connect(url) as conn:
        return Counter(dict(conn.execute("select state, count(*) from ops.outbox group by state").fetchall()))


def _email_people(n: int, **kwargs) -> list[Person]:
    return [Person(f"e{i}", channels="email", household_id=f"h{i}", **kwargs) for i in range(n)]


def test_crash_after_acceptance_is_reconciled_not_resent(warehouse: str, sandbox: SandboxControl) -> None:
    build_warehouse(warehouse, [*_email_people(3), Person("s1", channels="sms", household_id="hs")])
    _plan(warehouse)

    class CrashAfterAccept:
        """The real provider, then the process dies before the outcome is recorded."""

        def __init__(self, real):
            self.real, self.name, self.channel, self.max_batch = real, real.name, real.channel, real.max_batch

        def send(self, messages):
            self.real.send(messages)
            raise SystemExit("killed between the provider's acceptance and our record")

        def lookup(self, *args, **kwargs):
            return self.real.lookup(*args, **kwargs)

    for batch_id in _batches(warehouse):
        channel = batch_id.rsplit(":", 1)[1]
        crashing = CrashAfterAccept(build_provider(warehouse, channel, AS_OF))
        with pytest.raises(SystemExit):
            send_one_batch(warehouse, batch_id, provider=crashing, clock=lambda: NOON_CHICAGO)
    assert _states(warehouse) == {"sending": 4}
    before = _sent(sandbox)
    assert sum(before.values()) == 4

    _send_all(warehouse)  # the rerun
    assert _sent(sandbox) == before, "nothing was sent twice"
    assert _states(warehouse) == {"accepted": 4}
    with psycopg.connect(warehouse) as conn:
        steps = conn.execute("select distinct next_step from ops.outreach_attempts").fetchall()
    assert steps == [("reconciled: the provider had accepted it",)]


def test_send_process_killed_while_the_provider_accepts_is_reconciled_not_resent(
    warehouse: str, sandbox: SandboxControl
) -> None:
    """A real kill: the send runs in its own process, which gets SIGKILL while the provider holds the
    request it goes on to accept; the rerun finds the message at the provider and sends nothing again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    build_warehouse(warehouse, _email_people(3))
    _plan(warehouse)
    (batch_id,) = _batches(warehouse)
    sandbox.add_fault("hang", provider="sendgrid", endpoint="send", hang_seconds=3, then="accept")
    code = (
        "from datetime import UTC, datetime; from reactivation.outreach.delivery import send_one_batch; "
        f"send_one_batch({warehouse!r}, {batch_id!r}, clock=lambda: datetime(2026, 11, 2, 18, tzinfo=UTC))"
    )
    child = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while sandbox.stats()["faults"]["pending"]:  # the provider now holds the request
            assert child.poll() is None and time.monotonic() < deadline, "the send never reached the provider"
            time.sleep(0.05)
        assert _states(warehouse) == {"sending": 3}, "the outbox says 'sending' before any provider call"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    while sum(_sent(sandbox).values()) < 3:  # the provider accepts after the hang, the client long gone
        assert time.monotonic() < deadline, "the provider never accepted the held request"
        time.sleep(0.05)
    assert _states(warehouse) == {"sending": 3}, "no outcome was recorded by the killed process"

    _send_all(warehouse)  # the rerun
    assert sum(_sent(sandbox).values()) == 3, "nothing was sent twice"
    assert _states(warehouse) == {"accepted": 3}


def test_connection_dropped_after_acceptance_is_reconciled(warehouse: str, sandbox: SandboxControl) -> None:
    build_warehouse(warehouse, _email_people(2))
    _plan(warehouse)
    sandbox.add_fault("accept_then_drop", provider="sendgrid", count=1)
    first = _send_all(warehouse)
    assert first[0]["unknown"] == 2 and first[0]["accepted"] == 0
    _send_all(warehouse)
    assert sum(_sent(sandbox).values()) == 2
    assert _states(warehouse) == {"accepted": 2}


def test_rerun_of_the_same_night_sends_nothing_new(warehouse: str, sandbox: SandboxControl) -> None:
    build_warehouse(warehouse, _email_people(3))
    _plan(warehouse)
    _send_all(warehouse)
    sent = _sent(sandbox)
    _plan(warehouse)  # the same logical date again
    _send_all(warehouse)
    assert _sent(sandbox) == sent and sum(sent.values()) == 3


@pytest.mark.parametrize("mode", ["429", "500", "503"])
def test_storms_send_everything_exactly_once(warehouse: str, sandbox: SandboxControl, mode: str) -> None:
    people = _email_people(5) + [Person(f"s{i}", channels="sms", household_id=f"hs{i}") for i in range(5)]
    build_warehouse(warehouse, people)
    _plan(warehouse)
    sandbox.add_fault(mode, provider="any", count=4, retry_after=0)
    summaries = _send_all(warehouse)
    assert sum(s["retries"] for s in summaries) >= 1
    sent = _sent(sandbox)
    assert sum(sent.values()) == 10 and set(sent.values()) == {1}
    assert _states(warehouse) == {"accepted": 10}


def test_opt_out_or_booking_after_planning_is_not_sent(warehouse: str, sandbox: SandboxControl) -> None:
    build_warehouse(warehouse, _email_people(3))
    _plan(warehouse)
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            "insert into ops.opt_outs (person_id, channel, status, source) values (%s, 'email', 'opt_out', %s)",
            ("e0", "unsubscribe"),
        )
        conn.execute(
            "insert into staging.stg_emr__appointments values ('native_csv', 'loc_a', %s, 'booked', %s)",
            ("src-e1", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        )
    summary = _send_all(warehouse)[0]
    assert summary["cancelled"] == {"opted_out": 1, "booked": 1}
    assert list(_sent(sandbox)) and sum(_sent(sandbox).values()) == 1
    assert _states(warehouse) == {"accepted": 1, "cancelled": 2}


def test_quiet_hours_across_time_zones(warehouse: str, sandbox: SandboxControl) -> None:
    people = [
        Person("ny", channels="email", timezone="America/New_York", household_id="h1"),
        Person("la", channels="email", timezone="America/Los_Angeles", household_id="h2"),
    ]
    build_warehouse(warehouse, people)
    _plan(warehouse)
    early = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # 09:30 in New York, 06:30 in Los Angeles
    summary = _send_all(warehouse, now=early)[0]
    assert (summary["accepted"], summary["deferred"]) == (1, 1)
    with psycopg.connect(warehouse) as conn:
        deferred = conn.execute("select person_id, not_before from ops.outbox where state = 'deferred'").fetchone()
    assert deferred == ("la", datetime(2026, 11, 2, 16, 0, tzinfo=UTC))  # 08:00 in Los Angeles
    _send_all(warehouse, now=datetime(2026, 11, 2, 15, 0, tzinfo=UTC))  # still too early there
    assert _states(warehouse) == {"accepted": 1, "deferred": 1}
    _send_all(warehouse, now=datetime(2026, 11, 2, 16, 5, tzinfo=UTC))
    assert _states(warehouse) == {"accepted": 2}


def test_daily_cap_is_checked_again_at_send_time(warehouse: str, sandbox: SandboxControl) -> None:
    """Two nights' touches for one household reach the send step together: only one goes today."""
    build_warehouse(
        warehouse,
        [Person("a", location_id="loc_a", household_id="h", channels="email"),
         Person("b", location_id="loc_b", household_id="h", channels="email")],
    )  # fmt: skip
    config = dataclasses.replace(_config(), household_day_cap=2)  # planning lets both through...
    _plan(warehouse, config=config)
    summaries = _send_all(warehouse)  # ...sending holds to the configured cap of one per household per day
    assert sum(s["accepted"] for s in summaries) == 1 and sum(s["deferred"] for s in summaries) == 1


def test_rejected_batch_sends_nothing(warehouse: str, sandbox: SandboxControl) -> None:
    build_warehouse(warehouse, _email_people(2))
    data = parse_config({"cadences": {"c": {"touches": [{"day": 0, "channel": "email"}]}}})
    plan_outreach(warehouse, as_of=AS_OF, dag_run_id="r", config=data)
    [batch_id] = _batches(warehouse)
    decide_batches(warehouse, batch_ids=[batch_id], decision="reject", decided_by="ops")
    assert _send_all(warehouse)[0]["skipped"] == "batch is rejected"
    assert sum(_sent(sandbox).values()) == 0
