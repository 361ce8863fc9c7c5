"""The nightly leadership report: built from a real warehouse, self-contained, free of PHI, and rendered in Chromium.

The warehouse is real: the Synthea sample and a generated two-location extract are
loaded, dbt builds the marts, outreach planning runs for five weekly nights (with a
holdout, and one location blocked by the gate on the last night). What the providers
and staff would have reported back (acceptance, delivery, replies, STOP, call
outcomes, bookings) and the quality gate's results are written into ``ops`` as the
sending and webhook code would, and dbt rebuilds the outcome and reporting marts.

Then the report must: be one file that loads nothing (no external src/href, script,
@import or font); contain none of the patients' names, birth dates, phones, emails
or person ids; show the night's headline numbers and a chart for every reporting
mart that has data; and render in headless Chromium (Debian's package, installed by
``scripts/system-deps.sh``) with no console error, no exception and no network
request, which the test proves it would notice with a tampered copy of the report.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from xml.etree import ElementTree

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
AS_OF = date(2023, 10, 31)
NIGHTS = [AS_OF - timedelta(weeks=w) for w in (4, 3, 2, 1, 0)]
BROWSER_TIMEOUT = 120
# Simulated call outcomes by bucket (0-99): a quarter book, some are reached, some get voicemail, the rest no answer.
CALL_OUTCOMES = ((25, "booked"), (60, "reached"), (85, "voicemail"))
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


# -- the warehouse ---------------------------------------------------------------------------------


def _bucket(key: str, modulo: int) -> int:
    """A stable pseudo-random bucket for an outreach key: the simulated outcomes are reproducible."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % modulo


def _at(night: date, hour: int) -> datetime:
    return datetime.combine(night, dt_time(hour), tzinfo=UTC)


def _simulate_night(url: str, night: date) -> None:
    """What sending, the providers' webhooks, replies and staff calls would have recorded for one night."""
    with psycopg.connect(url) as conn:
        sent = conn.execute(
            """update ops.outbox o
               set state = 'accepted', send_attempts = 1, created_at = %(at)s, updated_at = %(at)s,
                   provider = case o.channel when 'email' then 'sendgrid' when 'sms' then 'twilio' else 'call_list' end,
                   provider_message_id = case when o.channel = 'call' then null else 'sim-' || md5(o.outreach_key) end
               from ops.batches b
               where b.batch_id = o.batch_id and b.as_of = %(night)s and b.status = 'approved' and o.state = 'planned'
               returning o.outreach_key, o.person_id, o.household_id, o.rule_id, o.channel, o.location_id,
                         o.episode_id, o.provider_message_id""",
            {"night": night, "at": _at(night, 18)},
        ).fetchall()
        conn.execute("update ops.batches set status = 'sent' where as_of = %s and status = 'approved'", (night,))
        for key, person, household, rule, channel, location, episode, message_id in sent:
            conn.execute(
                "insert into ops.outreach_touches values (%s, %s, %s, %s, %s, %s, 'accepted')",
                (key, person, household, rule, channel, _at(night, 18)),
            )
            conn.execute(
                """insert into ops.outreach_attempts
                   (outreach_key, attempted_at, as_of, channel, rule_id, provider_message_id, status, next_step)
                   values (%s, %s, %s, %s, %s, %s, 'accepted', 'await delivery events')""",
                (key, _at(night, 18), night, channel, rule, message_id),
            )
            bucket = _bucket(key, 100)
            if channel == "call":
                outcome = next((o for limit, o in CALL_OUTCOMES if bucket < limit), None)
                conn.execute(
                    """insert into ops.call_list (outreach_key, location_id, person_id, rule_id, as_of, outcome,
                       outcome_at) values (%s, %s, %s, %s, %s, %s, %s)""",
                    (key, location, person, rule, night, outcome, _at(night + timedelta(days=1), 15)),
                )
            else:
                provider = "sendgrid" if channel == "email" else "twilio"
                status, rank = ("delivered", 3) if bucket < 80 else ("open", 4) if bucket < 90 else ("bounce", 9)
                if channel == "sms" and status == "open":
                    status = "read"
                conn.execute(
                    """insert into ops.message_status
                       (outreach_key, provider, provider_message_id, status, status_rank, occurred_at)
                       values (%s, %s, %s, %s, %s, %s)""",
                    (key, provider, message_id, status, rank, _at(night, 19)),
                )
                if channel == "sms" and bucket < 90 and bucket % 9 == 0:
                    stop = bucket % 2 == 0
                    conn.execute(
                        """insert into ops.inbound_messages (provider_message_id, person_id, person_ids, location_id,
                           keyword, keyword_match, sender_key, reply, received_at)
                           values (%s, %s, array[%s], %s, %s, 'exact', %s, %s, %s)""",
                        ("in-" + key, person, person, location, "stop" if stop else "other", "k-" + key[:12],
                         "stop_confirmation" if stop else "none", _at(night, 20)),
                    )  # fmt: skip
                    if stop:
                        conn.execute(
                            "insert into ops.opt_outs values (%s, 'sms', 'opt_out', 'sms_stop', %s)",
                            (person, _at(night, 20)),
                        )
            if night < AS_OF and _bucket(key, 5) == 0:
                # A booking seen in a later extract ends the episode: a week later, within the report's window.
                conn.execute(
                    """update ops.episodes set status = 'ended', end_reason = 'booked', ended_on = %s
                       where episode_id = %s and status = 'active'""",
                    (night + timedelta(weeks=1), episode),
                )


def _record_quality(url: str, night: date, dag_run_id: str, blocked_location: str | None) -> None:
    from reactivation.quality.store import DecisionRow, ResultRow, ensure_quality_schema, save_run

    ensure_quality_schema(url)
    warning_fails = night == NIGHTS[2]
    results = [
        ResultRow("raw_extracts", "row_count_within_history", "critical", True, 3100),
        ResultRow("raw_extracts", "patients_have_birth_dates", "warning", not warning_fails, 0.97),
        ResultRow("outreach_candidates", "no_opted_out_candidates", "critical", True, 0),
        ResultRow("outreach_candidates", "valid_phone_share", "warning", True, 0.8),
    ]
    decisions = [DecisionRow(None, False, ())]
    if blocked_location:
        results.append(ResultRow("raw_extracts", "appointments_fresh", "critical", False, 12, blocked_location))
        decisions.append(DecisionRow(blocked_location, True, ("appointments are 12 days old",)))
    save_run(url, dag_run_id=dag_run_id, as_of=night, results=results, decisions=decisions)


def _dbt(url: str, args: list[str]) -> None:
    from reactivation.transform import run_dbt

    # Models and seeds only: the dbt tests are the dbt suite's business, and skipping them halves the time.
    process, _ = run_dbt(url, [*args, "--exclude", "resource_type:test", "resource_type:unit_test"], as_of=AS_OF)
    if process.returncode != 0:
        # A reporting model another change broke must not hide the rest of the report: it shows "no data yet".
        tail = "\n".join(line for line in process.stdout.splitlines()[-40:] if "ERROR" in line or "Error" in line)
        print(f"dbt {' '.join(args)} exited {process.returncode}:\n{tail}")


@pytest.fixture(scope="module")
def report_warehouse(embedded_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A warehouse after five simulated nights, and the state folder the report is written to."""
    from reactivation.generate import generate_extract
    from reactivation.ingest.pipeline import load_path
    from reactivation.outreach.config import load_config
    from reactivation.outreach.planning import plan_outreach
    from reactivation.settings import get_settings

    state = tmp_path_factory.mktemp("report-state")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REACTIVATION_STATE_DIR", str(state))
        mp.delenv("WAREHOUSE_URL", raising=False)
        get_settings.cache_clear()
        generated = state / "generated"
        generate_extract(generated, patients=300, locations=2, seed=11, as_of=AS_OF, workers=1)
        locations = sorted(p.name for p in generated.iterdir() if (p / "patients.csv").exists())
        load_path(url, SYNTHEA, fmt="synthea", location="nebraska")
        for location in locations:
            load_path(url, generated / location, fmt="csv", location=location)
        _dbt(url, ["build"])
        config = dataclasses.replace(load_config(), holdout_share=0.2)
        for night in NIGHTS:
            run_id = f"scheduled__{night.isoformat()}"
            blocked = locations[-1] if night == AS_OF else None
            _record_quality(url, night, run_id, blocked)
            plan_outreach(
                url,
                as_of=night,
                dag_run_id=run_id,
                config=config,
                blocked_locations={blocked: ["appointments are 12 days old"]} if blocked else None,
            )
            _simulate_night(url, night)
        yield {"url": url, "state": state, "generated": generated, "locations": locations}
        get_settings.cache_clear()
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="module")
def report(report_warehouse: dict) -> dict:
    """The report written by the stage the nightly DAG calls, which first rebuilds the outcome and reporting marts."""
    from reactivation.reporting.stage import build_report
    from reactivation.settings import get_settings

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REACTIVATION_STATE_DIR", str(report_warehouse["state"]))
        mp.setenv("WAREHOUSE_URL", report_warehouse["url"])
        get_settings.cache_clear()
        summary = build_report(as_of=AS_OF, dag_run_id="scheduled__2023-10-31")
        get_settings.cache_clear()
    path = Path(summary["path"])
    return {**report_warehouse, "summary": summary, "path": path, "html": path.read_text(encoding="utf-8")}


# -- what the report says --------------------------------------------------------------------------


def test_report_is_written_where_the_state_folder_says_and_recorded_as_a_stage(report: dict) -> None:
    from markupsafe import escape

    from reactivation.reporting.stage import STALE_NOTICE

    assert report["path"] == report["state"] / "reports" / f"reactivation-report-{AS_OF.isoformat()}.html"
    with psycopg.connect(report["url"]) as conn:
        status, summary = conn.execute(
            "select status, summary from ops.stage_results where dag_run_id = %s and stage = 'report'",
            ("scheduled__2023-10-31",),
        ).fetchone()
    refresh = summary["marts_refresh"]
    assert refresh is not None and refresh["nodes"], "the stage rebuilt the outcome and reporting marts"
    assert status == ("success" if refresh["success"] else "warning")
    # A refresh that failed is said at the top of the report, not only in the stage's record.
    assert (str(escape(STALE_NOTICE)) in report["html"]) == (status == "warning")
    assert summary["path"] == str(report["path"])
    assert summary["headline"]["as_of"] == AS_OF.isoformat()


def test_headline_numbers_match_the_warehouse(report: dict) -> None:
    headline = report["summary"]["headline"]
    with psycopg.connect(report["url"]) as conn:
        eligible = conn.execute(
            "select count(distinct person_id) from marts.care_gaps where status = 'open' and as_of_date = %s", (AS_OF,)
        ).fetchone()[0]
        contacted = conn.execute(
            """select count(distinct o.person_id) from ops.outbox o join ops.batches b using (batch_id)
               where b.as_of = %s and o.state = 'accepted'""",
            (AS_OF,),
        ).fetchone()[0]
        blocked = conn.execute(
            "select count(*) from ops.batches where as_of = %s and status = 'blocked'", (AS_OF,)
        ).fetchone()[0]
        booked = conn.execute(
            "select count(*) from ops.episodes where end_reason = 'booked' and ended_on = %s", (AS_OF,)
        ).fetchone()[0]
    assert headline["eligible"] == eligible > 0
    assert headline["contacted"] == contacted > 0
    assert 0 < headline["delivered"] <= headline["contacted"]
    assert headline["booked"] == booked > 0
    assert headline["blocked_batches"] == blocked > 0
    assert headline["opt_outs"] is not None and headline["opt_outs"] <= headline["contacted"]
    assert headline["gate"] == "passed"
    html = report["html"]
    for key in ("eligible", "contacted", "delivered", "booked", "blocked_batches"):
        assert f'data-key="{key}">{headline[key]:,}<' in html


def _rows(url: str, table: str, where: str = "true") -> int:
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass(%s)", (f"marts.{table}",)).fetchone()[0] is None:
            return 0
        return conn.execute(f"select count(*) from marts.{table} where {where}").fetchone()[0]


def test_every_chart_is_drawn_when_its_mart_has_data(report: dict) -> None:
    html, url = report["html"], report["url"]
    # Built from what always exists: tonight's suppressions and the gate's own results.
    assert 'id="suppressions"' in html and "No valid phone or email" in html
    assert 'id="quality-trend"' in html
    # Each chart, the mart it draws and what the mart must hold for there to be something to draw.
    charts_by_mart = {
        "rpt_reactivation_funnel": (["funnel", "booked-by-location", "booked-by-channel", "delivered-by-channel"],
                                    "contacted > 0"),
        "rpt_holdout_lift": (["lift"], "true"),
        "rpt_bookings_weekly": (["bookings-weekly"], "bookings > 0 and week_start > date '2023-08-08'"),
        "rpt_opt_outs_and_complaints": (["opt-outs"], "week_start > date '2023-08-08'"),
    }  # fmt: skip
    built = [table for table, (_, where) in charts_by_mart.items() if _rows(url, table, where)]
    assert "rpt_reactivation_funnel" in built, "the simulated nights give the funnel contacts"
    for table, (chart_ids, _) in charts_by_mart.items():
        for chart_id in chart_ids:
            if table in built:
                assert f'id="{chart_id}"' in html, f"{chart_id} missing although marts.{table} has rows"
    if _rows(url, "rpt_location_comparison"):
        for location in report["locations"]:
            assert f'<th scope="row">{location}</th>' in html
    if not built:
        assert "No data yet." in html
    # Every chart carries its accessible name and description, and the numbers as a table.
    svgs = re.findall(r"<svg [^>]*>", html)
    assert svgs
    for svg in svgs:
        assert 'role="img"' in svg and "aria-labelledby=" in svg
    assert html.count("<title id=") == len(svgs) == html.count("<desc id=")
    assert html.count("Numbers behind this chart") == len(svgs)
    for svg in re.findall(r"<svg .*?</svg>", html, re.S):
        ElementTree.fromstring(svg)  # well-formed: a browser drops a chart that is not


def test_report_is_self_contained(report: dict) -> None:
    html = report["html"]
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"<script\b", html, re.I), "no script at all, inline or not"
    assert not re.search(r"@import|@font-face|url\(", html, re.I)
    assert not re.search(r"<(?:link|img|iframe|object|embed|video|audio|source)\b[^>]*\b(?:src|href)=\"(?!data:)", html)
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    # The SVG namespace is an identifier, not a fetch; it is the only URL in the file.
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {"http://www.w3.org/2000/svg"}


def _patients() -> dict[str, set[str]]:
    """Names, birth dates, phones and emails of every patient in the fixture extracts."""
    found: dict[str, set[str]] = {"names": set(), "birth_dates": set(), "contacts": set()}
    with (SYNTHEA / "patients.csv").open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            found["names"].update(filter(None, (row["FIRST"], row["LAST"], row.get("MAIDEN"))))
            found["birth_dates"].add(row["BIRTHDATE"])
    return found


def _generated_patients(folder: Path, found: dict[str, set[str]]) -> None:
    for path in folder.glob("*/patients.csv"):
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                found["names"].update(filter(None, (row["first_name"], row["last_name"])))
                found["birth_dates"].add(row["birth_date"])
                found["contacts"].update(filter(None, (row["phone"], row["email"])))


def test_report_carries_no_patient_data(report: dict) -> None:
    html = report["html"]
    patients = _patients()
    _generated_patients(report["generated"], patients)
    assert len(patients["names"]) > 100 and len(patients["birth_dates"]) > 100
    # Names as whole words (a short name such as "Al" is a substring of ordinary words, not a leak).
    words = set(re.findall(r"[A-Za-z][A-Za-z0-9'’-]+", re.sub(r"<[^>]+>", " ", html)))
    leaked_names = {name for name in patients["names"] if len(name) > 2 and name in words}
    assert not leaked_names, f"{len(leaked_names)} patient name(s) in the report"
    # Birth dates: the report's own dates are the weeks and nights it covers, all in 2023.
    leaked_dates = {d for d in patients["birth_dates"] if d and d in html and not d.startswith("2023-")}
    assert not leaked_dates, f"{len(leaked_dates)} birth date(s) in the report"
    # Phones and emails as written (short values such as "123" are deliberate junk in the generated extract).
    leaked_contacts = {c for c in patients["contacts"] if len(c) >= 7 and c in html}
    assert not leaked_contacts, f"{len(leaked_contacts)} phone(s) or email(s) in the report"
    with psycopg.connect(report["url"]) as conn:
        person_ids = {r[0] for r in conn.execute("select person_id from marts.persons")}
    assert person_ids and not {p for p in person_ids if p in html}, "person ids in the report"


def test_cli_prints_the_path_and_the_headline(report: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_roles import with_subcommand

    from reactivation import reporting
    from reactivation.cli import main

    with_subcommand(monkeypatch, "report", reporting.add_subcommand)

    out = tmp_path / "custom.html"
    env = {"REACTIVATION_STATE_DIR": str(report["state"]), "WAREHOUSE_URL": report["url"]}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(["report", "--as-of", AS_OF.isoformat(), "--out", str(out), "--json"])
    assert code == 0
    printed = json.loads(buffer.getvalue())
    assert printed["path"] == str(out.resolve()) and out.exists()
    assert printed["headline"]["contacted"] == report["summary"]["headline"]["contacted"]


# -- in the browser --------------------------------------------------------------------------------


def _chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("Chromium is not installed: run scripts/system-deps.sh (Debian package `chromium`)")
    return path


def _run_killed_on_timeout(command: list[str], timeout: int = BROWSER_TIMEOUT) -> subprocess.CompletedProcess:
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{Path(command[0]).name} did not finish within {timeout} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


class DevTools:
    """A minimal Chrome DevTools Protocol client over one websocket (flattened target sessions)."""

    def __init__(self, websocket_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(websocket_url, max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(event)
            if event.get("method") == method:
                return event

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(json.loads(self.ws.recv(timeout=left)))
            except TimeoutError:
                return

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def devtools(tmp_path: Path) -> Iterator[DevTools]:
    """Headless Chromium with the DevTools protocol on a free port; killed (its whole group) afterwards."""
    profile = tmp_path / "chromium-profile"
    process = subprocess.Popen(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("Chromium did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        client = DevTools(f"ws://127.0.0.1:{port}{path}")
        yield client
    finally:
        if client is not None:
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=BROWSER_TIMEOUT)


def _open_and_collect(tools: DevTools, page: Path) -> dict:
    """Load a page in a new tab; return its console errors, exceptions, network requests and a few facts."""
    target = tools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Runtime", "Log", "Page", "Network"):
        tools.call(f"{domain}.enable", session=session)
    tools.events.clear()
    url = page.resolve().as_uri()
    tools.call("Page.navigate", {"url": url}, session=session)
    tools.wait_for("Page.loadEventFired")
    tools.drain(1.0)  # late console messages (CSP reports arrive after load)
    facts = tools.call(
        "Runtime.evaluate",
        {
            "expression": """JSON.stringify({
                charts: document.querySelectorAll('svg.chart').length,
                title: document.title,
                resources: performance.getEntriesByType('resource').map(e => e.name),
                headline: [...document.querySelectorAll('.headline .value')].map(e => e.textContent.trim()),
                width: document.documentElement.scrollWidth,
            })""",
            "returnByValue": True,
        },
        session=session,
    )["result"]["value"]
    mine = [e for e in tools.events if e.get("sessionId") == session]
    errors = [
        e["params"]["entry"]["text"]
        for e in mine
        if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"
    ]
    errors += [
        " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])
        for e in mine
        if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in {"error", "assert"}
    ]
    errors += [
        e["params"]["exceptionDetails"].get("text", "exception")
        for e in mine
        if e.get("method") == "Runtime.exceptionThrown"
    ]
    blocked = {
        e["params"]["requestId"]: e["params"].get("blockedReason")
        for e in mine
        if e.get("method") == "Network.loadingFailed"
    }
    # Every request but the page itself, with what stopped it (None: it went out).
    requests = [
        (e["params"]["request"]["url"], blocked.get(e["params"]["requestId"]))
        for e in mine
        if e.get("method") == "Network.requestWillBeSent" and e["params"]["request"]["url"] != url
    ]
    tools.call("Target.closeTarget", {"targetId": target})
    return {"errors": errors, "requests": requests, **json.loads(facts)}


def test_report_renders_in_chromium_without_console_errors(report: dict, devtools: DevTools, tmp_path: Path) -> None:
    seen = _open_and_collect(devtools, report["path"])
    assert seen["errors"] == []
    assert seen["requests"] == [] and seen["resources"] == []
    assert seen["title"] == f"Patient reactivation: night of {AS_OF.isoformat()}"
    assert seen["charts"] == report["html"].count('class="chart"') >= 2
    assert len(seen["headline"]) == 7
    assert seen["width"] <= 1280, "the page fits a laptop screen without sideways scrolling"

    # The check can fail: the same report with one external image and one script must be caught.
    tampered = tmp_path / "tampered.html"
    intruders = '<img src="https://example.invalid/pixel.png" alt=""><script>throw new Error("x")</script>'
    tampered.write_text(report["html"].replace("</main>", intruders + "</main>"), encoding="utf-8")
    caught = _open_and_collect(devtools, tampered)
    assert len(caught["errors"]) >= 2, "a blocked external image and a blocked script are console errors"
    assert all("Content Security Policy" in error for error in caught["errors"])
    assert caught["requests"] == [("https://example.invalid/pixel.png", "csp")], "the page's policy stops the fetch"


def test_report_screenshot(report: dict, tmp_path: Path) -> None:
    shot = report["state"] / "reports" / f"reactivation-report-{AS_OF.isoformat()}.png"
    shot.unlink(missing_ok=True)
    result = _run_killed_on_timeout(
        [
            _chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            report["path"].resolve().as_uri(),
        ]
    )
    assert result.returncode == 0, result.stderr[-1000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert _png_size(shot) == (1280, 2000)


def test_a_location_scoped_reporter_gets_a_report_of_its_location_only(report: dict, tmp_path: Path) -> None:
    """Run as a login in ``reactivation_reporter_<location>``: row-level security scopes every chart and table."""
    from test_roles import _as

    from reactivation.reporting.render import write_report
    from reactivation.roles import ensure_roles, scoped_role_name

    url = report["url"]
    mine, other = report["locations"][0], report["locations"][-1]
    ensure_roles(url)
    user = f"rt_{uuid.uuid4().hex[:8]}_report"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'create role "{user}" login in role "{scoped_role_name(mine)}"')
    try:
        path, numbers = write_report(_as(url, user), AS_OF, tmp_path / "scoped.html")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'drop owned by "{user}"')
            conn.execute(f'drop role "{user}"')
    html = path.read_text(encoding="utf-8")
    assert f'<th scope="row">{mine}</th>' in html and 'id="booked-by-location"' in html
    assert other not in html, "another location's rows are invisible to a scoped reporter"
    # What is not scoped by location (the night's ops numbers, the holdout, the quality trend) is not shown.
    assert numbers["contacted"] is None and numbers["eligible"] is None
    assert 'id="lift"' not in html and 'id="quality-trend"' not in html


def test_report_on_an_empty_warehouse_says_no_data_yet(warehouse: str, tmp_path: Path) -> None:
    from reactivation.reporting.render import write_report
    from reactivation.warehouse import ensure_schema

    ensure_schema(warehouse)
    path, numbers = write_report(warehouse, AS_OF, tmp_path / "empty.html")
    html = path.read_text(encoding="utf-8")
    assert numbers["eligible"] is None and numbers["contacted"] == 0 and numbers["blocked_batches"] == 0
    assert html.count("No data yet.") >= 8 and "<svg" not in html
    assert 'data-key="eligible">–<' in html


def test_charts_with_sparse_data_are_well_formed() -> None:
    from reactivation.reporting import charts

    drawn = [
        charts.line_chart("One week", ["2023-10-30"], {"a": [None], "b <&>": [0.5]}, x_label="W", y_label="R",
                          value_format=charts.fmt_percent, y_max=1.0),
        charts.line_chart("Nothing", [], {}, x_label="W", y_label="R"),
        charts.column_chart("Gaps", ["w1", "w2"], {"x": [None, 3]}, x_label="W", y_label="N"),
        charts.bar_chart("None", [], value_label="People", category_label="Reason"),
        charts.funnel_chart("Funnel", [("Eligible", 10), ("Contacted", None), ("Booked", 0)],
                            bases={"Booked": "Contacted"}),
        charts.lift_chart("Lift", [charts.LiftRow("r1", None, None, None), charts.LiftRow("r2", 0.1, -0.05, 0.25)],
                          value_label="pp"),
    ]  # fmt: skip
    for chart in drawn:
        root = ElementTree.fromstring(str(chart.svg))
        assert root.find("{http://www.w3.org/2000/svg}title").text == chart.title
        assert chart.summary
    assert "b &lt;&amp;&gt;" in str(drawn[0].svg)
    assert charts.nice_ticks(0, 3, integer=True) == [0, 1, 2, 3]
