"""Human-in-the-loop approval, end to end: the real nightly DAG waits in Airflow and a person answers it.

One practice is large enough that tonight's SMS batch exceeds the pre-approved
policy's ``max_batch_size`` (config/outreach.yml, 500), so planning leaves it
``awaiting_approval`` and the DAG's ``approve_batches`` (Airflow's
HITLOperator: Approve / Reject) parks in ``awaiting_input``. The night runs as an operator runs
it, ``reactivation run`` (which runs ``airflow dags test``), against the local
provider sandbox and webhook receiver started by this test. While it waits, the
test answers the way an operations lead does: through the Airflow api-server's
HITL REST API (the one behind the UI's "Required actions"), logged in as a user
of Airflow's simple auth manager, on the same metadata database.

Night 1 is rejected: nothing of the batch reaches the provider, the batch is
``rejected`` by that person, its touches are cancelled and the episodes rolled
back. Night 2 (the next day) plans those touches again and gets no answer: the
approval window (shortened through ``REACTIVATION_APPROVAL_TIMEOUT_MINUTES``)
passes, Airflow's scheduler-side timeout sweep applies the default (Reject), and
the batch expires unsent. Night 3 plans them once more and is approved: the batch
is sent, once per touch, and records who approved it.

Three logical nights run within one real day, about 1.5-2.5 minutes each.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from nightly_setup import generate, isolated_state, release_state, set_timezone, write_sources

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIRST_NIGHT = date(2023, 10, 31)
DAG_ID = "reactivation_nightly"
OPS_LEAD, OPS_PASSWORD = "ops_lead", "approve-me-" + uuid.uuid4().hex[:8]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def daytime_zone(hour: int = 14) -> str:
    """A fixed-offset IANA zone where it is now about ``hour`` o'clock: sends fall inside 08:00-21:00."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12  # -12 .. +11
    return "Etc/GMT" + (f"+{-offset}" if offset < 0 else f"-{offset}")  # the Etc/GMT sign is inverted


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ApiServer:
    """``airflow api-server`` on the nightly run's Airflow home, killed with its process group at the end."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_file.open("a")
        command = [str(BIN / "airflow"), "api-server", "-H", "127.0.0.1", "-p", str(self.port), "-w", "1"]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        self.client = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.client.get("/api/v2/monitor/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Airflow api-server did not start; see {log_file}")
            time.sleep(0.5)

    def login(self, username: str, password: str) -> None:
        answer = self.client.post("/auth/token", json={"username": username, "password": password})
        assert answer.status_code == 201, answer.text
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"

    def pending_approvals(self) -> list[dict]:
        answer = self.client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails", params={"response_received": False})
        answer.raise_for_status()
        return list(answer.json()["hitl_details"])

    def respond(self, detail: dict, option: str) -> httpx.Response:
        ti = detail["task_instance"]
        path = f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}"
        return self.client.patch(f"{path}/hitlDetails", json={"chosen_options": [option], "params_input": {}})

    def detail(self, detail: dict) -> dict:
        ti = detail["task_instance"]
        path = f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/{ti['map_index']}"
        answer = self.client.get(f"{path}/hitlDetails")
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


class Night:
    """``reactivation run`` for one as-of date in the background, with a hard kill if it never ends."""

    def __init__(self, env: dict[str, str], as_of: date, log_dir: Path, timeout: int = 420) -> None:
        self.as_of = as_of
        self.deadline = time.monotonic() + timeout
        self.output = log_dir / f"run-{as_of}.out"
        with self.output.open("w") as out:
            self.process = subprocess.Popen(
                [str(BIN / "reactivation"), "run", "--as-of", as_of.isoformat(), "--timeout", str(timeout - 30)],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            )  # fmt: skip

    def wait_for_approval_request(self, api: ApiServer) -> dict:
        while time.monotonic() < self.deadline:
            # As in the UI's "Required actions": a request whose task is parked waiting for a person.
            pending = [p for p in api.pending_approvals() if p["task_instance"]["state"] == "awaiting_input"]
            if pending:
                assert len(pending) == 1, pending
                return pending[0]
            assert self.process.poll() is None, f"the run ended without asking for approval:\n{self.text()[-3000:]}"
            time.sleep(1)
        self.kill()
        raise AssertionError("no approval request within the time limit")

    def finish(self) -> int:
        try:
            return self.process.wait(timeout=max(1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the nightly run did not finish in time:\n{self.text()[-3000:]}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # `airflow dags test` ignores SIGTERM while it waits
            self.process.wait()

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def sweep_approval_timeouts(env: dict[str, str]) -> None:
    """What Airflow's scheduler does every loop for HITL tasks: resolve those whose response window has passed.

    ``airflow dags test`` runs no scheduler, so this runs the scheduler's own sweep
    (``SchedulerJobRunner.check_awaiting_input_timeouts``) once against the same metadata database.
    """
    code = (
        "from airflow.jobs.job import Job\n"
        "from airflow.jobs.scheduler_job_runner import SchedulerJobRunner\n"
        "SchedulerJobRunner(job=Job()).check_awaiting_input_timeouts()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]


def _night_facts(url: str, as_of: date) -> dict:
    with psycopg.connect(url) as conn:
        batches = {
            row[0]: {"status": row[1], "decided_by": row[2], "items": row[3]}
            for row in conn.execute(
                "select batch_id, status, decided_by, items from ops.batches where as_of = %s", (as_of,)
            )
        }
        outbox = {
            batch_id: Counter(dict(conn.execute(
                "select state, count(*) from ops.outbox where batch_id = %s group by state", (batch_id,)
            ).fetchall()))
            for batch_id in batches
        }  # fmt: skip
        episodes = {}
        for batch_id in batches:
            episodes[batch_id] = conn.execute(
                """select count(*), count(*) filter (where e.touches_planned > 0 and e.last_touch_on = %s)
                   from ops.outbox o join ops.episodes e using (episode_id) where o.batch_id = %s""",
                (as_of, batch_id),
            ).fetchone()
        phones = {
            batch_id: [r[0] for r in conn.execute(
                """select p.phone_e164 from ops.outbox o join marts.persons p using (person_id)
                   where o.batch_id = %s""",
                (batch_id,),
            )]
            for batch_id in batches
        }  # fmt: skip
    return {"batches": batches, "outbox": outbox, "episodes": episodes, "phones": phones}


@pytest.fixture(scope="module")
def stack(request) -> Iterator[dict]:
    """A fresh state folder, a large one-practice extract, the warehouse, the provider sandbox and receiver,
    the Airflow home, and an api-server with one operations lead who can answer approval requests."""
    from reactivation.local_services import local_providers
    from reactivation.nightly_run import airflow_env, ensure_airflow_db
    from reactivation.sandbox.clients import SandboxControl
    from reactivation.settings import Settings
    from reactivation.warehouse import ensure_schema, warehouse_url

    tmp, patch = isolated_state("hitl")
    settings = Settings()
    generated = tmp / "generated"
    generate(generated, patients=1800, locations=1, seed=11, as_of=FIRST_NIGHT)
    set_timezone(generated / "loc_01", daytime_zone())  # the practice's patients are awake: nothing is deferred
    sources = write_sources(tmp / "sources.yml", {"loc_01": generated / "loc_01"})
    logs = tmp / "logs"
    logs.mkdir()
    try:
        with warehouse_url(settings) as url, local_providers(url) as providers:
            ensure_schema(url)
            passwords = tmp / "passwords.json"
            passwords.write_text(json.dumps({OPS_LEAD: OPS_PASSWORD}))
            env = airflow_env(settings, url, sources)
            env.update(providers)
            env.update(
                {
                    "WAREHOUSE_URL": url,  # `reactivation run` uses this warehouse and these providers
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{OPS_LEAD}:op",
                    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                    "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
                }
            )
            ensure_airflow_db(env, logs / "airflow-setup.log")
            api = ApiServer(env, logs / "api-server.log")
            try:
                api.login(OPS_LEAD, OPS_PASSWORD)
                with SandboxControl(providers["REACTIVATION_SANDBOX_URL"]) as sandbox:
                    yield {"url": url, "env": env, "api": api, "sandbox": sandbox, "logs": logs}
            finally:
                api.stop()
    finally:
        release_state(tmp, patch, request)


def _twilio_recipients(sandbox) -> Counter:
    return Counter(m["to"] for m in sandbox.messages()["twilio"])


def _answered_night(stack: dict, as_of: date, option: str | None) -> dict:
    """Run one night; answer its approval request with ``option`` (None: let the window pass)."""
    before = _twilio_recipients(stack["sandbox"])
    night = Night(stack["env"], as_of, stack["logs"])
    try:
        request = night.wait_for_approval_request(stack["api"])
        if option is None:
            time.sleep(2)  # the window (REACTIVATION_APPROVAL_TIMEOUT_MINUTES) is shorter than this
            sweep_approval_timeouts(stack["env"])
        else:
            answer = stack["api"].respond(request, option)
            assert answer.status_code == 200, answer.text
            again = stack["api"].respond(request, "Approve")
            assert again.status_code == 409, "an answered request cannot be answered again"
        code = night.finish()
    finally:
        night.kill()
    return {
        "as_of": as_of,
        "code": code,
        "output": night.text(),
        "request": request,
        "answered": stack["api"].detail(request),
        "sent": _twilio_recipients(stack["sandbox"]) - before,
        **_night_facts(stack["url"], as_of),
    }


@pytest.fixture(scope="module")
def rejected_night(stack) -> dict:
    return _answered_night(stack, FIRST_NIGHT, "Reject")


@pytest.fixture(scope="module")
def unanswered_night(stack, rejected_night) -> Iterator[dict]:
    stack["env"]["REACTIVATION_APPROVAL_TIMEOUT_MINUTES"] = "0.01"
    try:
        yield _answered_night(stack, FIRST_NIGHT + timedelta(days=1), None)
    finally:
        del stack["env"]["REACTIVATION_APPROVAL_TIMEOUT_MINUTES"]


@pytest.fixture(scope="module")
def approved_night(stack, unanswered_night) -> dict:
    return _answered_night(stack, FIRST_NIGHT + timedelta(days=2), "Approve")


def _sms_batch(night: dict) -> str:
    return f"{night['as_of'].isoformat()}:loc_01:sms"


def test_a_large_batch_waits_for_a_person_in_airflow(rejected_night) -> None:
    request = rejected_night["request"]
    batch_id = _sms_batch(rejected_night)
    assert rejected_night["batches"][batch_id]["items"] > 500, "the batch is over the policy's max_batch_size"
    assert request["task_instance"]["task_id"] == "approve_batches"
    assert request["task_instance"]["state"] == "awaiting_input"
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert batch_id in request["body"], "the request names the batches it is about"
    pre_approved = [b for b in rejected_night["batches"] if b != batch_id]
    assert pre_approved, "the policy still approves the night's other batches"


def test_rejected_batch_sends_nothing_and_rolls_its_episodes_back(rejected_night) -> None:
    night = rejected_night
    assert night["code"] == 0, night["output"][-3000:]
    batch_id = _sms_batch(night)
    assert night["answered"]["chosen_options"] == ["Reject"]
    assert night["answered"]["responded_by_user"]["name"] == OPS_LEAD
    batch = night["batches"][batch_id]
    assert batch["status"] == "rejected" and batch["decided_by"] == f"hitl:{OPS_LEAD}"
    assert night["outbox"][batch_id] == {"cancelled": batch["items"]}
    rows, still_counted = night["episodes"][batch_id]
    assert rows == batch["items"] and still_counted == 0, "the rejected touches did not happen"
    assert not set(night["phones"][batch_id]) & set(night["sent"]), "nothing of the batch reached the provider"
    others = {b: night["batches"][b]["status"] for b in night["batches"] if b != batch_id}
    assert set(others.values()) == {"sent"}, others


def test_unanswered_batch_expires_unsent_when_the_window_passes(unanswered_night) -> None:
    night = unanswered_night
    assert night["code"] == 0, night["output"][-3000:]
    assert night["answered"]["chosen_options"] == ["Reject"] and night["answered"]["responded_by_user"] is None
    batch_id = _sms_batch(night)
    batch = night["batches"][batch_id]
    assert batch["status"] == "expired" and batch["decided_by"] == "hitl:timeout"
    assert night["outbox"][batch_id] == {"cancelled": batch["items"]}
    assert not set(night["phones"][batch_id]) & set(night["sent"])


def test_approved_batch_is_sent_once_and_records_who_approved(approved_night) -> None:
    night = approved_night
    assert night["code"] == 0, night["output"][-3000:]
    batch_id = _sms_batch(night)
    batch = night["batches"][batch_id]
    assert batch["items"] > 500, "yesterday's rejected touches are planned again tonight"
    assert night["answered"]["chosen_options"] == ["Approve"]
    assert batch["decided_by"] == f"hitl:{OPS_LEAD}" and batch["status"] in {"sending", "sent"}
    states = night["outbox"][batch_id]
    # Three logical nights run within one real day here, and the daily cap is re-checked at send time
    # against real sends: the few people already messaged today (an email on an earlier "night") are
    # deferred, not sent. Everyone else in the batch is sent.
    assert set(states) <= {"accepted", "deferred"} and states["accepted"] >= 0.95 * batch["items"], states
    assert sum(night["sent"].values()) == states["accepted"], "each accepted touch is one provider message"
    assert set(night["sent"].values()) == {1}, "nobody got the message twice"
