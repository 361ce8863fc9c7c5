"""The quality gate: Great Expectations between the marts and every patient.

One clean warehouse is built per module (the Synthea sample as location
``nebraska`` plus a generated two-location native extract, loaded and transformed
by dbt for 2023-10-31) and copied as a template for each test. Each critical
expectation then gets a fixture that violates it, and the gate must block with the
right plain-words reason in the right scope (one location, or everything); the
clean copy must pass. Also: results stored for trends, volume bounds from the
previous successful runs, Data Docs without a patient value, the CLI exit codes,
the DAG stage and its notification, and the committed context matching the code.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import ClassVar

import psycopg
import pytest
from nightly_setup import write_sources

from reactivation.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
AS_OF = date(2023, 10, 31)

# Created by the test when the outreach marts are not built by dbt yet (planned columns).
PLANNED_MARTS = [
    """create table if not exists marts.outreach_candidates (
        person_id text, household_id text, location_id text, rule_id text, reason text, other_open_rules text,
        segment text, priority_score numeric, preferred_channel text, language text, contactable_channels text,
        timezone text, due_date date, days_overdue integer, as_of date)""",
    """create table if not exists marts.outreach_suppressions (
        person_id text, rule_id text, reason_code text, detail text, as_of date)""",
]


def _admin(url: str) -> str:
    return url.rpartition("/")[0] + "/postgres"


@pytest.fixture(scope="module")
def clean_template(embedded_server: str, tmp_path_factory) -> Iterator[dict]:
    """A clean, transformed warehouse database used as a template (built once: dbt takes a minute)."""
    from reactivation.generate import generate_extract
    from reactivation.ingest.pipeline import load_path
    from reactivation.transform import run_dbt_build

    name = f"qg_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    patch = pytest.MonkeyPatch()
    patch.setenv("REACTIVATION_STATE_DIR", str(tmp_path_factory.mktemp("template-state")))
    patch.delenv("WAREHOUSE_URL", raising=False)
    get_settings.cache_clear()
    generated = tmp_path_factory.mktemp("generated") / "extract"
    try:
        generate_extract(generated, patients=300, locations=2, seed=11, as_of=AS_OF, workers=1)
        assert load_path(url, SYNTHEA, fmt="synthea", location="nebraska").totals["rejected"] == 0
        for location in ("loc_01", "loc_02"):
            assert load_path(url, generated / location, fmt="csv", location=location).totals["rejected"] == 0
        built = run_dbt_build(url, as_of=AS_OF)
        assert built["success"], built["failures"]
        with psycopg.connect(url) as conn:
            for statement in PLANNED_MARTS:
                conn.execute(statement)
    finally:
        patch.undo()
        get_settings.cache_clear()
    yield {"name": name, "generated": generated}
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def gate_db(clean_template: dict, embedded_server: str, tmp_path: Path, monkeypatch) -> Iterator[str]:
    """A fresh copy of the clean warehouse, with this test's state folder and warehouse URL in the environment."""
    name = f"qg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{clean_template["name"]}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    monkeypatch.setenv("WAREHOUSE_URL", url)
    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
    for variable in (
        "REACTIVATION_VOLUME_TOLERANCE_PCT",
        "REACTIVATION_MAX_EXTRACT_AGE_DAYS",
        "AIRFLOW_CONN_SENDGRID_DEFAULT",
    ):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REACTIVATION_SENDGRID_HOST", "http://127.0.0.1:9")  # nothing listens: email is best effort
    get_settings.cache_clear()
    yield url
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _gate(url: str, run_id: str = "test-run", as_of: date = AS_OF):
    from reactivation.quality.gate import run_gate_check

    return run_gate_check(url, as_of=as_of, dag_run_id=run_id, state_dir=get_settings().state_dir)


def _latest_load(conn: psycopg.Connection, location: str, entity: str) -> int:
    return conn.execute(
        """select load_id from raw.load_manifest
           where location_id = %s and entity = %s and status = 'loaded'
           order by extract_date desc nulls last, load_id desc limit 1""",
        (location, entity),
    ).fetchone()[0]


def _a_candidate(conn: psycopg.Connection, location: str) -> dict:
    row = conn.execute(
        """select candidates.person_id, candidates.preferred_channel,
                  sources.source_system, sources.source_location_id, sources.patient_id
           from marts.outreach_candidates as candidates
           inner join marts.person_sources as sources on candidates.person_id = sources.person_id
           where candidates.location_id = %s
           order by candidates.person_id, sources.patient_id limit 1""",
        (location,),
    ).fetchone()
    assert row is not None, f"the clean fixture has no candidate at {location}"
    return dict(zip(("person_id", "channel", "source_system", "location", "patient_id"), row, strict=True))


def _staging_is_built(conn: psycopg.Connection) -> bool:
    kind = conn.execute("select relkind from pg_class where oid = to_regclass('staging.stg_emr__patients')").fetchone()
    return kind is not None and kind[0] in ("r", "p", "m")


def _mutate(url: str, *fixtures: Callable):
    """Apply fixtures to the raw extract; rebuild staging (as the nightly dbt build would) when it is not a view.

    The fixtures rewrite rows already loaded, which no delivery can do (a corrected file is a new load),
    so incremental staging models are rebuilt in full to see them.
    """
    with psycopg.connect(url) as conn:
        scopes = [fixture(conn) for fixture in fixtures]
        rebuild = any(getattr(f, "reads_staging", False) for f in fixtures) and _staging_is_built(conn)
    if rebuild:
        from reactivation.transform import run_dbt

        process, _ = run_dbt(url, ["run", "--select", "path:models/staging", "--full-refresh"], as_of=AS_OF)
        assert process.returncode == 0, process.stdout[-2000:]
    return scopes[-1]


def _reads_staging(fixture: Callable) -> Callable:
    """Mark a fixture whose change the gate sees through the staging models."""
    fixture.reads_staging = True
    return fixture


# -- one fixture per critical expectation: (mutate the clean copy, expected scope) ------------------


def _duplicate_key(entity: str, location: str) -> Callable:
    """A second, conflicting row for the first key of a location's latest file of one entity."""

    def fixture(conn: psycopg.Connection) -> str:
        load_id = _latest_load(conn, location, entity)
        columns = [
            row[0]
            for row in conn.execute(
                """select column_name from information_schema.columns
                   where table_schema = 'raw' and table_name = %s and column_name <> 'source_line'
                   order by ordinal_position""",
                (entity,),
            )
        ]
        column_list = ", ".join(columns)
        conn.execute(
            f"""insert into raw.{entity} (source_line, {column_list})
                select 999999, {column_list} from raw.{entity} where load_id = %s order by source_line limit 1""",
            (load_id,),
        )
        return location

    fixture.__name__ = f"duplicate_{entity}_key"
    return fixture


duplicate_patient_key = _duplicate_key("patients", "loc_01")


def missing_keys(conn: psycopg.Connection) -> str:
    load_id = _latest_load(conn, "loc_02", "encounters")
    conn.execute(
        """insert into raw.quarantine (load_id, source_line, column_name, reason)
           select %s, 900000 + n, 'patient_id', 'required value is missing' from generate_series(1, 20) as n""",
        (load_id,),
    )
    return "loc_02"


def visit_in_future(conn: psycopg.Connection) -> str:
    load_id = _latest_load(conn, "loc_02", "encounters")
    conn.execute(
        """update raw.encounters set encounter_date = %s
           where load_id = %s and encounter_id = (select min(encounter_id) from raw.encounters where load_id = %s)""",
        (AS_OF + timedelta(days=40), load_id, load_id),
    )
    return "loc_02"


@_reads_staging
def birth_after_visit(conn: psycopg.Connection) -> str:
    encounters, patients = _latest_load(conn, "loc_02", "encounters"), _latest_load(conn, "loc_02", "patients")
    patient_id, visit = conn.execute(
        """select patient_id, min(encounter_date) from raw.encounters where load_id = %s
           group by patient_id having min(encounter_date) < %s order by patient_id limit 1""",
        (encounters, AS_OF - timedelta(days=365)),
    ).fetchone()
    conn.execute(
        "update raw.patients set birth_date = %s where load_id = %s and patient_id = %s",
        (visit.date() + timedelta(days=60), patients, patient_id),
    )
    return "loc_02"


def born_after_as_of(conn: psycopg.Connection) -> str:
    load_id = _latest_load(conn, "loc_01", "patients")
    conn.execute(
        """update raw.patients set birth_date = %s
           where load_id = %s and patient_id = (select min(patient_id) from raw.patients where load_id = %s)""",
        (AS_OF + timedelta(days=100), load_id, load_id),
    )
    return "loc_01"


def stale_extract(conn: psycopg.Connection) -> str:
    conn.execute(
        "update raw.load_manifest set extract_date = %s where location_id = 'loc_01'", (AS_OF - timedelta(days=10),)
    )
    return "loc_01"


def extract_volume_drop(conn: psycopg.Connection) -> str:
    """Three earlier patients files of loc_02 had 1000 rows; tonight's has about 200."""
    for day in (1, 8, 15):
        conn.execute(
            """insert into raw.load_manifest (source_system, location_id, entity, file_name, file_size, sha256,
                                              extract_date, rows_read, rows_loaded, status, finished_at)
               select source_system, location_id, entity, 'patients.csv', 1, %s, %s, 1000, 1000, 'loaded', now()
               from raw.load_manifest where load_id = %s""",
            (f"history-{day}", date(2023, 10, day), _latest_load(conn, "loc_02", "patients")),
        )
    return "loc_02"


@_reads_staging
def candidate_opted_out(conn: psycopg.Connection) -> str:
    who = _a_candidate(conn, "loc_01")
    conn.execute(
        """insert into raw.contact_preferences (load_id, source_line, source_system, location_id_loaded,
                                                patient_id, channel, status, effective_date)
           values (%s, 999999, %s, %s, %s, %s, 'opt_out', %s)""",
        (
            _latest_load(conn, who["location"], "contact_preferences"),
            who["source_system"],
            who["location"],
            who["patient_id"],
            who["channel"],
            AS_OF - timedelta(days=5),
        ),
    )
    return "loc_01"


@_reads_staging
def candidate_deceased(conn: psycopg.Connection) -> str:
    who = _a_candidate(conn, "loc_02")
    conn.execute(
        "update raw.patients set deceased = true where location_id_loaded = %s and patient_id = %s",
        (who["location"], who["patient_id"]),
    )
    return "loc_02"


@_reads_staging
def candidate_booked(conn: psycopg.Connection) -> str:
    who = _a_candidate(conn, "loc_01")
    conn.execute(
        """insert into raw.appointments (load_id, source_line, source_system, location_id_loaded, appointment_id,
                                         patient_id, status, scheduled_at, created_at)
           values (%s, 999999, %s, %s, 'FIXTURE-BOOKED', %s, 'booked', %s, %s)""",
        (
            _latest_load(conn, who["location"], "appointments"),
            who["source_system"],
            who["location"],
            who["patient_id"],
            f"{AS_OF + timedelta(days=10)} 09:00:00+00",
            f"{AS_OF - timedelta(days=2)} 09:00:00+00",
        ),
    )
    return "loc_01"


def marts_not_rebuilt(conn: psycopg.Connection) -> None:
    conn.execute("update marts.outreach_candidates set as_of = as_of - 1")


def _seed_candidate_history(conn: psycopg.Connection, observed: int, *, blocked: bool) -> None:
    from reactivation.quality.store import QUALITY_DDL

    for statement in QUALITY_DDL:
        conn.execute(statement)
    for day in (28, 29, 30):
        run = f"history-{day}"
        conn.execute(
            """insert into ops.quality_results (dag_run_id, as_of, suite, expectation, severity, success,
                                                observed_value)
               values (%s, %s, 'marts.outreach_candidates', 'outreach_candidates_volume_within_history',
                       'critical', true, %s)""",
            (run, date(2023, 10, day), observed),
        )
        conn.execute(
            "insert into ops.gate_decisions (dag_run_id, as_of, scope, blocked) values (%s, %s, 'global', %s)",
            (run, date(2023, 10, day), blocked),
        )


def candidates_volume_drop(conn: psycopg.Connection) -> None:
    """The three previous successful runs had 1000 candidates; tonight has under 200."""
    _seed_candidate_history(conn, 1000, blocked=False)


def check_cannot_run(conn: psycopg.Connection) -> None:
    conn.execute("drop table marts.outreach_suppressions")


CRITICAL_FIXTURES: list[tuple[Callable, str, str]] = [
    (duplicate_patient_key, "patients_keys_unique", "key(s) on more than one row"),
    (_duplicate_key("encounters", "loc_02"), "encounters_keys_unique", "key(s) on more than one row"),
    (_duplicate_key("appointments", "loc_02"), "appointments_keys_unique", "key(s) on more than one row"),
    (
        _duplicate_key("contact_preferences", "loc_01"),
        "contact_preferences_keys_unique",
        "key(s) on more than one row",
    ),
    (missing_keys, "keys_present", "have no id and were set aside"),
    (visit_in_future, "encounters_not_in_future", "dated after the run date"),
    (birth_after_visit, "encounters_after_birth", "before the patient was born"),
    (born_after_as_of, "patients_born_before_as_of", "birth date(s) after the run date"),
    (stale_extract, "extracts_fresh", "days older than the run date"),
    (extract_volume_drop, "extract_volume_within_history", "where about 1000 were expected"),
    (candidate_opted_out, "candidates_not_opted_out", "opted out of the channel"),
    (candidate_deceased, "candidates_not_deceased", "marked deceased"),
    (candidate_booked, "candidates_not_already_booked", "already have an appointment booked"),
    (marts_not_rebuilt, "outreach_candidates_built_for_this_run", "marts were not rebuilt"),
    (candidates_volume_drop, "outreach_candidates_volume_within_history", "outside 500-1500"),
    (check_cannot_run, "outreach_suppressions_built_for_this_run", "relation marts.outreach_suppressions"),
]


def test_every_critical_expectation_has_a_violating_fixture() -> None:
    from reactivation.quality.suites import SUITES

    critical = {c.name for s in SUITES for c in s.checks if c.severity == "critical"}
    covered = {name for _, name, _ in CRITICAL_FIXTURES}
    assert critical <= covered, f"critical expectations without a fixture: {sorted(critical - covered)}"


def test_clean_extract_passes(gate_db: str) -> None:
    from reactivation.quality.gate import blocked_scope
    from reactivation.quality.suites import SUITES

    before = _tree_digest(ROOT / "expectations")
    decision = _gate(gate_db)
    assert not decision.blocked, decision.summary()["reasons"]
    failed_critical = [f.expectation for f in decision.expectations if f.severity == "critical" and not f.success]
    assert failed_critical == []
    assert len(decision.expectations) == sum(len(s.checks) for s in SUITES)
    assert blocked_scope(gate_db, "test-run") == (False, {})
    with psycopg.connect(gate_db) as conn:
        decisions = conn.execute(
            "select scope, location_id, blocked from ops.gate_decisions where dag_run_id = 'test-run' order by 2"
        ).fetchall()
        candidates = conn.execute("select count(*) from marts.outreach_candidates").fetchone()[0]
    assert decisions == [
        ("location", "loc_01", False),
        ("location", "loc_02", False),
        ("location", "nebraska", False),
        ("global", None, False),
    ]
    assert candidates > 50, "the clean fixture must have candidates for the business rules to judge"
    assert _tree_digest(ROOT / "expectations") == before, "running the gate must not rewrite the committed context"


@pytest.mark.parametrize(
    ("fixture", "expectation", "words"), CRITICAL_FIXTURES, ids=lambda v: getattr(v, "__name__", None)
)
def test_critical_failure_blocks_its_scope_with_the_reason(
    gate_db: str, fixture: Callable, expectation: str, words: str
) -> None:
    from reactivation.quality.gate import GLOBAL, blocked_scope

    location = _mutate(gate_db, fixture)
    decision = _gate(gate_db)

    failed = {f.expectation for f in decision.expectations if not f.success and f.severity == "critical"}
    assert expectation in failed
    global_blocked, blocked = blocked_scope(gate_db, "test-run")
    if location is None:
        assert global_blocked and decision.global_blocked
        assert any(words in reason and expectation in reason for reason in blocked[GLOBAL]), blocked[GLOBAL]
    else:
        assert not global_blocked, blocked.get(GLOBAL)
        assert set(blocked) == {location}, "only the failing location is blocked"
        assert any(words in reason and expectation in reason for reason in blocked[location]), blocked[location]
    with psycopg.connect(gate_db) as conn:
        stored = conn.execute(
            """select severity, success from ops.quality_results
               where dag_run_id = 'test-run' and expectation = %s and location_id is null""",
            (expectation,),
        ).fetchall()
    assert stored == [("critical", False)]


def test_warning_reports_but_blocks_nothing(gate_db: str) -> None:
    with psycopg.connect(gate_db) as conn:
        conn.execute(
            "update raw.patients set phone_is_valid = false where location_id_loaded = 'loc_02' and phone is not null"
        )
    decision = _gate(gate_db)
    assert not decision.blocked
    assert any("loc_02" in w and "phone number" in w for w in decision.warnings)
    with psycopg.connect(gate_db) as conn:
        rows = conn.execute(
            """select location_id, severity, success, observed_value from ops.quality_results
               where dag_run_id = 'test-run' and expectation = 'patients_phone_well_formed' order by 1 nulls first"""
        ).fetchall()
        warnings = conn.execute(
            "select warnings from ops.gate_decisions where dag_run_id = 'test-run' and scope = 'global'"
        ).fetchone()[0]
    assert rows == [(None, "warning", False, 1), ("loc_02", "warning", False, 0)]
    assert any("phone number" in w for w in warnings)


def test_volume_bounds_come_from_previous_successful_runs_only(gate_db: str, monkeypatch) -> None:
    with psycopg.connect(gate_db) as conn:
        _seed_candidate_history(conn, 1000, blocked=True)
    assert not _gate(gate_db).blocked, "runs the gate blocked are not a baseline"

    with psycopg.connect(gate_db) as conn:
        conn.execute("update ops.gate_decisions set blocked = false where dag_run_id like 'history-%'")
    assert _gate(gate_db).global_blocked

    monkeypatch.setenv("REACTIVATION_VOLUME_TOLERANCE_PCT", "95")
    assert not _gate(gate_db).blocked, "a wider tolerance accepts the same drop"


def test_each_run_stores_its_results_for_trends(gate_db: str) -> None:
    from reactivation.quality.suites import SUITES

    _gate(gate_db, run_id="night-1")
    _gate(gate_db, run_id="night-1")  # a re-run of the same run replaces its rows
    _gate(gate_db, run_id="night-2", as_of=AS_OF + timedelta(days=1))
    with psycopg.connect(gate_db) as conn:
        per_run = dict(
            conn.execute(
                "select dag_run_id, count(*) from ops.quality_results where location_id is null group by 1"
            ).fetchall()
        )
        volume = conn.execute(
            """select as_of, observed_value from ops.quality_results
               where expectation = 'outreach_candidates_volume_within_history' order by as_of"""
        ).fetchall()
        columns = [
            r[0]
            for r in conn.execute(
                """select column_name from information_schema.columns
                   where table_schema = 'ops' and table_name = 'quality_results' order by ordinal_position"""
            )
        ]
    expected = sum(len(s.checks) for s in SUITES)
    assert per_run == {"night-1": expected, "night-2": expected}
    assert [v[0] for v in volume] == [AS_OF, AS_OF + timedelta(days=1)] and volume[0][1] > 0
    assert columns == [
        "dag_run_id",
        "as_of",
        "suite",
        "expectation",
        "severity",
        "success",
        "observed_value",
        "location_id",
        "recorded_at",
    ]


def _patient_values(generated: Path) -> set[str]:
    needles: set[str] = set()
    with open(SYNTHEA / "patients.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            needles.update(
                {row["FIRST"], row["LAST"], f"{row['FIRST']} {row['LAST']}", row["ADDRESS"], row["BIRTHDATE"]}
            )
    for location in ("loc_01", "loc_02"):
        with open(generated / location / "patients.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                needles.update({f"{row['first_name']} {row['last_name']}", row["birth_date"]})
                needles.update(row[k] for k in ("last_name", "phone", "email", "address_line"))
    return {n for n in needles if n and len(n) >= 6 and n != AS_OF.isoformat()}


def test_data_docs_and_stored_results_hold_no_patient_value(gate_db: str, clean_template: dict) -> None:
    _mutate(gate_db, duplicate_patient_key, born_after_as_of, candidate_opted_out, candidate_deceased)
    decision = _gate(gate_db)
    assert decision.blocked and decision.data_docs is not None and decision.data_docs.exists()

    state = get_settings().state_dir
    files = [p for p in (state / "data_docs").rglob("*") if p.is_file() and p.suffix in {".html", ".json"}]
    files += [p for p in (state / "gx").rglob("*.json")]
    assert any("validations" in p.parts and p.suffix == ".html" for p in files), "validation pages were built"
    needles = _patient_values(clean_template["generated"])
    assert len(needles) > 500
    found = sorted({str(p.relative_to(state)) for p in files for n in needles if n in p.read_text(errors="replace")})
    assert not found, f"patient values found in {found}"  # where only, never the values
    for path in (state / "gx").rglob("*.json"):
        for result in json.loads(path.read_text())["results"]:
            assert not result["result"].get("partial_unexpected_list")
            assert "unexpected_rows" not in json.dumps(result["result"])
    summary_text = json.dumps(decision.summary())
    assert not [n for n in needles if n in summary_text]


def test_check_command_exits_non_zero_when_blocked(gate_db: str, capsys) -> None:
    import argparse

    from reactivation.quality import add_subcommand, check

    parser = argparse.ArgumentParser(prog="reactivation")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["check", "--as-of", AS_OF.isoformat()])
    assert args.func(args) == 0
    assert "passed" in capsys.readouterr().out

    _mutate(gate_db, visit_in_future)
    assert check(AS_OF) == 1
    out = capsys.readouterr().out
    assert "BLOCKED" in out and "loc_02" in out
    with psycopg.connect(gate_db) as conn:
        runs = conn.execute("select distinct dag_run_id from ops.gate_decisions").fetchall()
    assert runs == [(f"check__{AS_OF.isoformat()}",)]


class _MailSink(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mail_sink() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP endpoint that accepts SendGrid v3 mail sends and keeps them."""
    _MailSink.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MailSink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _MailSink.received
    server.shutdown()


def test_stage_records_blocked_and_emails_operations(gate_db: str, mail_sink, monkeypatch, clean_template) -> None:
    from reactivation.quality.stage import run_gate

    base_url, received = mail_sink
    monkeypatch.setenv("REACTIVATION_SENDGRID_HOST", base_url)
    monkeypatch.setenv("REACTIVATION_OPS_EMAIL", "ops@practice.example")
    _mutate(gate_db, stale_extract, candidate_opted_out)

    summary = run_gate(as_of=AS_OF.isoformat(), dag_run_id="manual__2023-10-31T00:00:00+00:00")

    assert summary["blocked"] and not summary["global_blocked"]
    assert summary["blocked_locations"] == ["loc_01"]
    with psycopg.connect(gate_db) as conn:
        status, stored = conn.execute(
            "select status, summary from ops.stage_results where stage = 'quality_gate'"
        ).fetchone()
    assert status == "blocked" and stored["blocked_locations"] == ["loc_01"]
    assert len(received) == 1 and received[0]["path"] == "/v3/mail/send"
    mail = json.loads(received[0]["body"])
    assert mail["personalizations"][0]["to"] == [{"email": "ops@practice.example"}]
    text = mail["content"][0]["value"]
    assert "loc_01" in text and "days older than the run date" in text and "opted out" in text
    needles = _patient_values(clean_template["generated"])
    assert not [n for n in needles if n in received[0]["body"].decode()]


def test_notifier_tolerates_a_missing_sandbox(gate_db: str, caplog) -> None:
    from reactivation.quality.notify import QualityGateNotifier
    from reactivation.quality.stage import run_gate

    _mutate(gate_db, marts_not_rebuilt)
    summary = run_gate(as_of=AS_OF, dag_run_id="run-without-sandbox")  # REACTIVATION_SENDGRID_HOST: closed port
    assert summary["global_blocked"]

    notifier = QualityGateNotifier()  # as a task callback: reads the decision from the warehouse
    with caplog.at_level("WARNING", logger="reactivation.quality.notify"):
        notifier.notify({"run_id": "run-without-sandbox"})
    assert notifier.sent is False
    assert "email not sent" in caplog.text and "global=True" in caplog.text


def test_no_decision_means_blocked(warehouse: str) -> None:
    from reactivation.quality.gate import GLOBAL, blocked_scope

    global_blocked, reasons = blocked_scope(warehouse, "never-gated")
    assert global_blocked and reasons[GLOBAL]


# -- the committed context -------------------------------------------------------------------------


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "uncommitted" not in path.parts:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def test_committed_context_is_what_the_suites_module_renders() -> None:
    from reactivation.quality.suites import CONTEXT_ROOT, render_context

    rendered = render_context()
    committed = {
        str(p.relative_to(CONTEXT_ROOT)): p.read_text()
        for p in (CONTEXT_ROOT / "gx").rglob("*")
        if p.is_file() and "uncommitted" not in p.parts
    }
    stale = sorted(k for k in rendered if committed.get(k) != rendered[k])
    assert not stale, f"regenerate with `python -m reactivation.quality.suites`: {stale}"
    assert set(committed) == set(rendered)


def test_committed_context_keeps_secrets_out_and_samples_off() -> None:
    import yaml

    from reactivation.quality.suites import CONTEXT_ROOT

    config_text = (CONTEXT_ROOT / "gx" / "great_expectations.yml").read_text()
    config = yaml.safe_load(config_text)
    source = config["fluent_datasources"]["warehouse"]
    assert source["connection_string"] == "${WAREHOUSE_URL}"
    assert "postgresql://" not in config_text and "@127.0.0.1" not in config_text
    assert config["analytics_enabled"] is False
    assert source["type"] == "postgres" and {a["type"] for a in source["assets"].values()} == {"table"}
    checkpoint = json.loads((CONTEXT_ROOT / "gx" / "checkpoints" / "reactivation_gate.json").read_text())
    assert checkpoint["result_format"]["partial_unexpected_count"] == 0
    assert checkpoint["result_format"]["include_unexpected_rows"] is False
    assert checkpoint["result_format"]["result_format"] != "COMPLETE"


def test_every_expectation_says_its_severity_scope_and_reason() -> None:
    from reactivation.quality.suites import CONTEXT_ROOT

    suites = list((CONTEXT_ROOT / "gx" / "expectations").rglob("*.json"))
    assert suites
    for path in suites:
        suite = json.loads(path.read_text())
        assert (
            path.relative_to(CONTEXT_ROOT / "gx" / "expectations").with_suffix("").as_posix().replace("/", ".")
            == suite["name"]
        ), "suites are named after the table they check"
        for expectation in suite["expectations"]:
            meta = expectation["meta"]
            assert meta["severity"] in {"critical", "warning"} and meta["severity"] == expectation["severity"]
            assert meta["scope"] in {"location", "global"} and meta["reason"] and meta["name"]
            query = expectation["kwargs"].get("unexpected_rows_query")
            if query is None:
                continue
            assert "{batch}" in query
            # GX aliases the batch itself unless the query joins; an alias of ours would then be a syntax error.
            if " join " not in query.lower():
                assert "{batch} as" not in query
            if meta["scope"] == "location":
                assert "location_id" in query


# -- end to end: the nightly DAG through Airflow ------------------------------------------------------


@pytest.fixture(scope="module")
def night_with_a_bad_location() -> Iterator[dict]:
    """`reactivation run` on two generated locations; loc_01's extract has a visit dated after the run date."""
    import os
    import shutil
    import subprocess
    import sys

    tmp = ROOT / ".state" / "tmp" / f"gate-e2e-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WAREHOUSE_URL", "REACTIVATION_"))}
    env["REACTIVATION_STATE_DIR"] = str(tmp / "state")
    binary = str(Path(sys.executable).parent / "reactivation")

    def run(args: list[str]) -> subprocess.CompletedProcess:
        # subprocess.run kills the child on timeout: a stuck Airflow run must not eat CI's time.
        return subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=1500, cwd=ROOT)

    generated = tmp / "generated"
    made = run(
        ["generate", "--patients", "300", "--locations", "2", "--seed", "11", "--as-of", str(AS_OF), str(generated)]
    )
    assert made.returncode == 0, made.stderr[-2000:]
    encounters = generated / "loc_01" / "encounters.csv"
    lines = encounters.read_text().splitlines(keepends=True)
    fields = lines[1].split(",")
    fields[2] = f"{AS_OF + timedelta(days=45)}T10:00:00"
    encounters.write_text(lines[0] + ",".join(fields) + "".join(lines[2:]))
    sources = write_sources(tmp / "sources.yml", {loc: generated / loc for loc in ("loc_01", "loc_02")})
    env["REACTIVATION_SOURCES"] = str(sources)
    nightly = run(["run", "--as-of", str(AS_OF)])

    from reactivation.embedded_warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(tmp / "state" / "warehouse")
    url = server.start()
    try:
        with psycopg.connect(url) as conn:
            facts = {
                "decisions": {
                    row[0]: (row[1], row[2])
                    for row in conn.execute(
                        "select coalesce(location_id, 'global'), blocked, reasons from ops.gate_decisions"
                    )
                },
                "stage": conn.execute(
                    "select status, summary from ops.stage_results where stage = 'quality_gate'"
                ).fetchone(),
                "batches": conn.execute(
                    "select location_id, status, blocked_reasons::text from ops.batches order by 1, 2"
                ).fetchall(),
                "sends": dict(
                    conn.execute(
                        """select location_id, count(*) filter (where provider_message_id is not null
                                                                  or state in ('sending', 'accepted', 'unknown'))
                           from ops.outbox group by location_id"""
                    ).fetchall()
                ),
            }
    finally:
        server.stop()
    yield {"run": nightly, **facts}
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.e2e
def test_nightly_run_blocks_only_the_bad_location_and_sends_nothing_there(night_with_a_bad_location) -> None:
    night = night_with_a_bad_location
    assert night["run"].returncode == 0, night["run"].stdout[-3000:] + night["run"].stderr[-3000:]
    status, summary = night["stage"]
    assert status == "blocked" and summary["blocked_locations"] == ["loc_01"]
    decisions = night["decisions"]
    assert decisions["global"][0] is False and decisions["loc_02"][0] is False
    assert decisions["loc_01"][0] is True
    assert any("visit(s) dated after the run date" in r for r in decisions["loc_01"][1])

    loc_01 = [b for b in night["batches"] if b[0] == "loc_01"]
    assert loc_01, "planning still writes tonight's batches for the blocked location"
    assert all(status == "blocked" and "dated after the run date" in reasons for _, status, reasons in loc_01)
    assert night["sends"].get("loc_01", 0) == 0, "nothing is sent where the gate blocked"


@pytest.mark.e2e
def test_nightly_run_sends_where_the_extract_is_clean(night_with_a_bad_location) -> None:
    night = night_with_a_bad_location
    loc_02 = [b for b in night["batches"] if b[0] == "loc_02"]
    assert loc_02 and not any(status == "blocked" for _, status, _ in loc_02)
    assert night["sends"].get("loc_02", 0) > 0, "a clean extract passes the gate and its messages go out"


# -- end to end, once per critical expectation: the nightly DAG blocks and sends nothing in scope ----


@pytest.fixture(scope="module")
def dag_state(clean_template: dict) -> Iterator[dict]:
    """One Airflow home for this module's DAG runs, and sources that name the template's own files.

    Ingest then finds every file already loaded (a no-op), so the violation applied to the warehouse
    copy is what the rest of the night sees.
    """
    import shutil

    tmp = ROOT / ".state" / "tmp" / f"gate-dag-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    sources = tmp / "sources.yml"
    generated = clean_template["generated"]
    sources.write_text(
        f"sources:\n  - name: nebraska\n    format: synthea\n    path: {SYNTHEA}\n    location: nebraska\n"
        + "".join(
            f"  - name: {loc}\n    format: csv\n    path: {generated / loc}\n    location: {loc}\n"
            for loc in ("loc_01", "loc_02")
        )
    )
    yield {"state": tmp / "state", "sources": sources}
    shutil.rmtree(tmp, ignore_errors=True)


def _run_night(url: str, dag_state: dict, *, mark_success: str) -> subprocess.CompletedProcess:
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WAREHOUSE_URL", "REACTIVATION_"))}
    env |= {
        "WAREHOUSE_URL": url,
        "REACTIVATION_STATE_DIR": str(dag_state["state"]),
        "REACTIVATION_SOURCES": str(dag_state["sources"]),
    }
    code = (
        "import sys; from datetime import date; from reactivation.nightly_run import run_nightly; "
        f"sys.exit(run_nightly(as_of=date.fromisoformat('{AS_OF}'), mark_success={mark_success!r}, timeout=900))"
    )
    # subprocess.run kills the child on timeout: a stuck Airflow run must not eat CI's time.
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1000, cwd=ROOT)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("fixture", "expectation", "words"), CRITICAL_FIXTURES, ids=lambda v: getattr(v, "__name__", None)
)
def test_nightly_dag_blocks_and_sends_nothing_in_scope(
    clean_template: dict,
    embedded_server: str,
    dag_state: dict,
    monkeypatch,
    fixture: Callable,
    expectation: str,
    words: str,
) -> None:
    """A full nightly DAG run on a warehouse that violates one critical expectation.

    The transform task is marked done without running (Airflow's --mark-success-pattern), as when an
    operator marks a stuck build successful: the violation then reaches the gate exactly as applied,
    including the ones a correct dbt build would have repaired (a candidate who opted out after the
    marts were built) or cannot produce (marts left from another night). The realistic path, dbt
    included, is the test above with a bad location's extract.
    """
    name = f"qg_dag_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}" template "{clean_template["name"]}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(dag_state["state"]))  # dbt's target folder for _mutate
    get_settings.cache_clear()
    try:
        location = _mutate(url, fixture)
        night = _run_night(url, dag_state, mark_success="^transform$")
        assert night.returncode == 0, night.stdout[-3000:] + night.stderr[-3000:]
        with psycopg.connect(url) as conn:
            gate_status, summary = conn.execute(
                "select status, summary from ops.stage_results where stage = 'quality_gate'"
            ).fetchone()
            batches = conn.execute(
                "select location_id, status, coalesce(blocked_reasons::text, '') from ops.batches"
            ).fetchall()
            sends = dict(
                conn.execute(
                    """select location_id, count(*) from ops.outbox
                       where provider_message_id is not null or state in ('sending', 'accepted', 'unknown')
                       group by location_id"""
                ).fetchall()
            )
    finally:
        with psycopg.connect(embedded_server, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')

    assert gate_status == "blocked"
    in_scope = [b for b in batches if location is None or b[0] == location]
    assert in_scope, ("planning writes tonight's batches in the blocked scope", night.stdout[-3000:])
    for _, status, reasons in in_scope:
        assert status == "blocked" and expectation in reasons and words in reasons, (status, reasons)
    if location is None:
        assert summary["global_blocked"] and sum(sends.values()) == 0, sends
    else:
        assert summary["blocked_locations"] == [location]
        assert sends.get(location, 0) == 0, "nothing is sent where the gate blocked"
        others = [b for b in batches if b[0] != location]
        assert others and not any(status == "blocked" for _, status, _ in others)
        assert sum(sends.values()) > 0, "the locations the gate did not block still send"
