"""Care gaps end to end on a real warehouse: a hand-made native-CSV extract is loaded,
dbt builds ``care_gaps`` for the as-of date 2026-11-01, and the exact rows of each
patient are checked; then a rule switched off in the catalog seed loses its rows.

The patients (all at one medical clinic):

* ``dormant``: last seen 2024-09-10, so no completed visit in 18 months.
* ``wellness_due``: yearly check-up on 2025-08-15, due again on 2026-08-15.
* ``wellness_done``: yearly check-up on 2026-04-01, not due.
* ``diabetic``: type 2 diabetes, HbA1c 9.1 on 2026-07-15 (three and a half months
  ago): above the 8.0 goal, so the 3-month interval applies and the test is overdue.
* ``deceased``: died on 2026-09-01: excluded from every rule.
* ``hospice``: a woman of 60 in palliative care (Z51.5): excluded from screening.
* ``cancelled``: cancelled her appointment on 2026-10-01 and has not rebooked.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest

from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.pipeline import load_path

AS_OF = date(2026, 11, 1)
LOCATION = "clinic"

# The nodes this suite owns; other teams' tests that dbt's eager selection pulls in
# (their marts are not built by +care_gaps) may error without concerning us.
OWN_NODES = (
    "care_gap",
    "int_clinical_events",
    "int_person_facts",
    "int_patients_mapped",
    "int_locations_classified",
    "int_completed_visits",
    "int_last_completed_visits",
    "value_set",
)

PATIENTS = [
    # patient_id, first, last, birth_date, sex, deceased, deceased_date
    ("dormant", "Dan", "Ortiz", "1990-03-10", "M", "false", ""),
    ("wellness_due", "Walt", "Dunn", "1995-06-01", "M", "false", ""),
    ("wellness_done", "Will", "Doyle", "1992-01-20", "M", "false", ""),
    ("diabetic", "Dave", "Ibarra", "1982-05-05", "M", "false", ""),
    ("deceased", "Dale", "Cooper", "1950-02-02", "M", "true", "2026-09-01"),
    ("hospice", "Helen", "Price", "1966-04-04", "F", "false", ""),
    ("cancelled", "Carl", "Nash", "1988-09-09", "M", "false", ""),
]

ENCOUNTERS = [
    # encounter_id, patient_id, date, CPT code, class
    ("e1", "dormant", "2024-09-10", "99213", "ambulatory"),
    ("e2", "wellness_due", "2025-08-15", "99395", "wellness"),
    ("e3", "wellness_done", "2026-04-01", "99395", "wellness"),
    ("e4", "diabetic", "2026-07-15", "99214", "ambulatory"),
    ("e5", "deceased", "2026-08-01", "99213", "ambulatory"),
    ("e6", "hospice", "2026-06-01", "99213", "ambulatory"),
    ("e7", "cancelled", "2026-03-03", "99213", "ambulatory"),
]

# (patient_id, rule_id) -> (status, evidence_date, evidence_value, due_date, days_overdue, exclusion_reason)
EXPECTED = {
    ("dormant", "dormant"): ("open", "2024-09-10", None, "2026-03-10", 236, None),
    ("dormant", "annual_wellness"): ("open", None, None, None, None, None),
    ("wellness_due", "dormant"): ("closed", "2025-08-15", None, "2027-02-15", None, None),
    ("wellness_due", "annual_wellness"): ("open", "2025-08-15", None, "2026-08-15", 78, None),
    ("wellness_done", "dormant"): ("closed", "2026-04-01", None, "2027-10-01", None, None),
    ("wellness_done", "annual_wellness"): ("closed", "2026-04-01", None, "2027-04-01", None, None),
    ("diabetic", "dormant"): ("closed", "2026-07-15", None, "2028-01-15", None, None),
    ("diabetic", "annual_wellness"): ("open", None, None, None, None, None),
    ("diabetic", "diabetes_a1c"): ("open", "2026-07-15", 9.1, "2026-10-15", 17, None),
    ("diabetic", "diabetic_eye_exam"): ("open", None, None, None, None, None),
    ("deceased", "dormant"): ("excluded", "2026-08-01", None, "2028-02-01", None, "deceased"),
    ("deceased", "annual_wellness"): ("excluded", None, None, None, None, "deceased"),
    ("hospice", "dormant"): ("excluded", "2026-06-01", None, "2027-12-01", None, "hospice_palliative"),
    ("hospice", "annual_wellness"): ("excluded", None, None, None, None, "hospice_palliative"),
    ("hospice", "breast_cancer_screening"): ("excluded", None, None, None, None, "hospice_palliative"),
    ("hospice", "cervical_cancer_screening"): ("excluded", None, None, None, None, "hospice_palliative"),
    ("hospice", "colorectal_cancer_screening"): ("excluded", None, None, None, None, "hospice_palliative"),
    ("cancelled", "dormant"): ("closed", "2026-03-03", None, "2027-09-03", None, None),
    ("cancelled", "annual_wellness"): ("open", None, None, None, None, None),
    ("cancelled", "missed_appointment"): ("open", "2026-10-01", None, "2026-10-15", 17, None),
}


def _write(folder: Path, entity: str, rows: list[dict]) -> None:
    columns = ENTITIES[entity].column_names
    with (folder / f"{entity}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: row.get(column, "") for column in columns})


def _write_extract(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder, "locations", [{"location_id": LOCATION, "name": "Test Family Medicine", "timezone": "UTC"}])
    _write(
        folder,
        "patients",
        [
            {
                "patient_id": pid,
                "first_name": first,
                "last_name": last,
                "birth_date": born,
                "sex": sex,
                "deceased": deceased,
                "deceased_date": died,
            }
            for pid, first, last, born, sex, deceased, died in PATIENTS
        ],
    )
    _write(
        folder,
        "encounters",
        [
            {
                "encounter_id": eid,
                "patient_id": pid,
                "encounter_date": f"{day}T10:00:00",
                "visit_type_code": code,
                "visit_type_system": "CPT",
                "encounter_class": klass,
            }
            for eid, pid, day, code, klass in ENCOUNTERS
        ],
    )
    _write(
        folder,
        "conditions",
        [
            {"patient_id": "diabetic", "code": "E11.9", "code_system": "ICD10CM", "onset_date": "2020-01-01"},
            {"patient_id": "hospice", "code": "Z51.5", "code_system": "ICD10CM", "onset_date": "2026-06-01"},
        ],
    )
    _write(
        folder,
        "observations",
        [
            {
                "patient_id": "diabetic",
                "code": "4548-4",
                "code_system": "LOINC",
                "observed_at": "2026-07-15T10:30:00",
                "value_numeric": "9.1",
                "unit": "%",
                "encounter_id": "e4",
            }
        ],
    )
    _write(
        folder,
        "appointments",
        [
            {
                "appointment_id": "a1",
                "patient_id": "cancelled",
                "status": "cancelled",
                "scheduled_at": "2026-10-05T09:00:00",
                "appointment_type": "Office Visit",
                "created_at": "2026-09-01T09:00:00",
                "cancelled_at": "2026-10-01T16:00:00",
            }
        ],
    )


def _care_gap_rows(url: str) -> dict[tuple[str, str], tuple]:
    """care_gaps rows keyed by (source patient id, rule id), through the identity map."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            select
                patients.patient_id,
                gaps.rule_id,
                gaps.status,
                gaps.evidence_date::text,
                gaps.evidence_value::float,
                gaps.due_date::text,
                gaps.days_overdue,
                gaps.exclusion_reason,
                gaps.location_id
            from marts.care_gaps as gaps
            inner join marts.person_sources as sources on gaps.person_id = sources.person_id
            inner join staging.stg_emr__patients as patients on sources.patient_key = patients.patient_key
            """
        ).fetchall()
    return {(row[0], row[1]): row[2:] for row in rows}


def _own_failures(summary: dict) -> list[dict]:
    return [f for f in summary["failures"] if any(name in (f["node"] or "") for name in OWN_NODES)]


@pytest.fixture(scope="module")
def built(embedded_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database with the extract loaded and +care_gaps built once for the module."""
    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt_build

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{embedded_server.rpartition('/')[0]}/{name}"
    tmp = tmp_path_factory.mktemp("care_gaps")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REACTIVATION_STATE_DIR", str(tmp / "state"))
        get_settings.cache_clear()
        extract = tmp / "extract"
        _write_extract(extract)
        loaded = load_path(url, extract, fmt="csv", location=LOCATION).as_dict()
        assert loaded["totals"]["rows_quarantined"] == 0 and loaded["totals"]["rejected"] == 0, loaded
        summary = run_dbt_build(url, as_of=AS_OF, select="+care_gaps")
        assert not _own_failures(summary), summary
        assert summary["nodes"].get("success", 0) > 0, summary
        yield url
    get_settings.cache_clear()
    with psycopg.connect(embedded_server, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def test_care_gaps_rows_for_each_patient(built: str) -> None:
    rows = _care_gap_rows(built)
    actual = {key: row[:6] for key, row in rows.items()}
    assert actual == EXPECTED
    assert {row[6] for row in rows.values()} == {LOCATION}


def test_a_rule_switched_off_in_the_seed_has_no_rows(
    built: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The SQL reads the catalog's `enabled` column: switching annual_wellness off drops its rows only."""
    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt_build

    before = _care_gap_rows(built)
    assert any(rule == "annual_wellness" for _, rule in before)
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute("update reference.care_gap_rules set enabled = false where rule_id = 'annual_wellness'")
    try:
        monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
        get_settings.cache_clear()
        # The evaluations are incremental: a changed catalog has every person evaluated again.
        summary = run_dbt_build(built, as_of=AS_OF, select="int_care_gap_evaluations care_gaps")
        assert not _own_failures(summary), summary
        assert summary["nodes"].get("success") == 2, summary  # both were rebuilt
        after = _care_gap_rows(built)
    finally:
        with psycopg.connect(built, autocommit=True) as conn:
            conn.execute("update reference.care_gap_rules set enabled = true where rule_id = 'annual_wellness'")
    assert after == {key: row for key, row in before.items() if key[1] != "annual_wellness"}


def test_dbt_sessions_sort_in_memory_without_jit(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data tests have no pre-hook: their sessions get the models' settings from dbt_env (PGOPTIONS),
    so a unique test over millions of events hashes in memory instead of spilling to disk."""
    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt

    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=600000")  # an operator's own options are kept
    get_settings.cache_clear()
    query = (
        "select current_setting('work_mem') as wm, current_setting('jit') as jit,"
        " current_setting('statement_timeout') as st"
    )
    process, _ = run_dbt(warehouse, ["show", "--inline", query, "--output", "json"])
    assert process.returncode == 0, process.stdout[-2000:]
    assert '"wm": "256MB"' in process.stdout and '"jit": "off"' in process.stdout, process.stdout[-2000:]
    assert '"st": "10min"' in process.stdout, process.stdout[-2000:]


def test_care_gaps_evaluated_incrementally_equal_a_full_evaluation_as_the_nights_go_by(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """int_care_gap_evaluations re-applies the rules only to the people whose inputs changed or whose
    rows change by the calendar (a due date, a due-soon window, a trigger leaving its lookback),
    int_care_gap_closing_events derives again only the people with an event come into view, and
    int_person_facts only those with a birthday, a death date, a visit or a value set's window
    reached. Night after night, with days and weeks between them, and once back to an earlier date, the
    three and care_gaps must equal what a full rebuild for the same night gives; and a night must
    evaluate and derive only some people again."""
    from reactivation.generate import generate_extract
    from reactivation.settings import get_settings
    from reactivation.transform import mart_fingerprints, run_dbt, run_dbt_build

    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    extract = tmp_path / "extract"
    expected = generate_extract(extract, patients=400, locations=1, seed=77, as_of=AS_OF)
    location = expected["locations"][0]["location_id"]
    assert not load_path(warehouse, extract / location, fmt="csv", location=location, extract_date=AS_OF).totals[
        "rejected"
    ]
    first = run_dbt_build(warehouse, as_of=AS_OF, select="+care_gaps")
    assert not _own_failures(first), first
    results_file = tmp_path / "state" / "dbt" / "target" / "run_results.json"

    compared = ("intermediate.int_care_gap_closing_events", "intermediate.int_person_facts", "marts.care_gaps")
    evaluated: dict[date, int] = {}
    derived: dict[date, int] = {}
    for night in (AS_OF + timedelta(days=1), AS_OF + timedelta(days=45), AS_OF + timedelta(days=3)):
        summary = run_dbt_build(warehouse, as_of=night, select="+care_gaps")
        assert not _own_failures(summary), summary
        results = json.loads(results_file.read_text())["results"]
        written = {r["unique_id"].split(".")[-1]: r["adapter_response"].get("rows_affected") for r in results}
        evaluated[night] = written["int_care_gap_evaluations"]
        derived[night] = written["int_person_facts"]
        incremental = mart_fingerprints(warehouse, compared)
        rebuilt = "int_care_gap_closing_events int_person_facts int_care_gap_evaluations care_gaps"
        process, _ = run_dbt(warehouse, ["run", "--full-refresh", "--select", rebuilt], as_of=night)
        assert process.returncode == 0, process.stdout[-3000:]
        assert mart_fingerprints(warehouse, compared) == incremental, night

    total = incremental["marts.care_gaps"][0]
    assert total > 400
    # Six weeks on, some statuses moved by the calendar and were evaluated again; most people's stood.
    assert 0 < evaluated[AS_OF + timedelta(days=45)] < total / 2, evaluated
    # Back to an earlier night, every person is evaluated again.
    assert evaluated[AS_OF + timedelta(days=3)] >= total, evaluated
    # The person facts likewise: six weeks of birthdays and visits derive some people again, not
    # most; an earlier night derives everyone.
    people = incremental["intermediate.int_person_facts"][0]
    assert 0 < derived[AS_OF + timedelta(days=45)] < people / 2, derived
    assert derived[AS_OF + timedelta(days=3)] == people, derived


# -- incremental builds --------------------------------------------------------------------


def _next_phone(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())[-10:]
    return f"{digits[:6]}{(int(digits[6:]) + 1) % 10_000:04d}"


def _write_delta(
    extract: Path, delta: Path, day: date, *, moved: tuple[str, ...] = (), newcomer_phone: str | None = None
) -> dict[str, list[str]]:
    """The next day's extract of one location: changed phones (also of the records in ``moved``), new
    appointments and visits, a new patient (with ``newcomer_phone`` when given)."""
    delta.mkdir(parents=True)
    with (extract / "patients.csv").open(newline="", encoding="utf-8") as handle:
        patients = list(csv.DictReader(handle))
    with_phone = [row for row in patients if sum(ch.isdigit() for ch in row["phone"]) >= 10][:6]
    changed = [dict(row, phone=_next_phone(row["phone"])) for row in with_phone[:3]]
    changed += [dict(row, phone=_next_phone(row["phone"])) for row in patients if row["patient_id"] in moved]
    newcomer = dict(patients[0], patient_id="delta-new-1", first_name="Quentin", birth_date="1971-07-07")
    if newcomer_phone:
        newcomer["phone"] = newcomer_phone
    _write(delta, "patients", [*changed, newcomer])
    stamp = day.isoformat()
    booked = [row["patient_id"] for row in with_phone[3:]]
    _write(delta, "appointments", [
        {"appointment_id": f"delta-{pid}", "patient_id": pid, "status": "booked",
         "scheduled_at": f"{(day + timedelta(days=14)).isoformat()}T09:00:00", "appointment_type": "Follow-up",
         "provider_id": "", "location_id": extract.name, "created_at": f"{stamp}T08:00:00", "cancelled_at": ""}
        for pid in booked
    ])  # fmt: skip
    visited = [row["patient_id"] for row in with_phone[:2]]
    _write(delta, "encounters", [
        {"encounter_id": f"delta-{pid}", "patient_id": pid, "encounter_date": f"{stamp}T10:00:00",
         "visit_type_code": "99213", "visit_type_system": "CPT", "encounter_class": "ambulatory",
         "description": "Office visit", "provider_id": "", "location_id": extract.name}
        for pid in visited
    ])  # fmt: skip
    return {"changed_phones": [row["patient_id"] for row in changed[:3]], "booked": booked, "visited": visited}


# Identity blocking keys shared by more than two records compare none of them (the default is 50).
SMALL_BLOCKS = {"identity_max_block_size": 2}


@pytest.mark.slow  # five dbt builds: minutes, so it runs with `make test-slow`
def test_a_nightly_delta_built_incrementally_equals_a_full_rebuild(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EMR staging models are incremental on load_id: the night after a full build, a delta
    extract (changed phones, bookings, visits, a new patient) is staged from the new loads only, and
    then a re-delivered delta file supersedes one already staged. Each time the identity, care-gap and
    outreach marts must equal what a ``dbt build --full-refresh`` builds from the same raw layer.

    Identity blocking runs with a limit of two records per key (SMALL_BLOCKS), so that the delta's
    changed phones move blocks across the limit: the match pairs a night compares again must include
    every record of such a block, not only the changed ones."""
    from reactivation.generate import generate_extract
    from reactivation.settings import get_settings
    from reactivation.transform import mart_fingerprints, run_dbt, run_dbt_build

    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    extract = tmp_path / "extract"
    expected = generate_extract(extract, patients=600, locations=2, seed=4242, as_of=AS_OF)
    locations = [location["location_id"] for location in expected["locations"]]
    for location in locations:
        assert not load_path(warehouse, extract / location, fmt="csv", location=location, extract_date=AS_OF).totals[
            "rejected"
        ]
    first = run_dbt_build(warehouse, as_of=AS_OF, variables=SMALL_BLOCKS)
    assert first["success"], first
    before = mart_fingerprints(warehouse)

    # Blocks at the limit: a phone held by three records of the delta's location (too many to compare)
    # loses one of them, and a phone held by two records (compared) gains the newcomer.
    phone_blocks = """select keys.block_key, array_agg(records.patient_id order by records.patient_id) as ids,
                             bool_and(records.source_location_id = %s) as all_here
                      from intermediate.int_patient_blocking_keys as keys
                      inner join intermediate.int_patients_normalised as records using (patient_key)
                      where keys.block_type = 'phone' group by keys.block_key having count(*) = %s
                      order by keys.block_key"""
    with psycopg.connect(warehouse) as conn:
        shrinking = next(row for row in conn.execute(phone_blocks, (locations[0], 3)).fetchall() if row[2])
        growing = conn.execute(phone_blocks, (locations[0], 2)).fetchall()[0]
    moved, stay = shrinking[1][0], shrinking[1][1:]
    pairs_on_phone = """select count(*) from intermediate.int_patient_match_pairs as pairs
                        inner join intermediate.int_patients_normalised as a on pairs.patient_key_a = a.patient_key
                        inner join intermediate.int_patients_normalised as b on pairs.patient_key_b = b.patient_key
                        where pairs.blocked_on like '%%phone%%' and a.patient_id = any(%s) and b.patient_id = any(%s)"""
    with psycopg.connect(warehouse) as conn:
        assert conn.execute(pairs_on_phone, (list(stay), list(stay))).fetchone()[0] == 0
        assert conn.execute(pairs_on_phone, (list(growing[1]), list(growing[1]))).fetchone()[0] == 1

    next_day = date(2026, 11, 2)
    delta = tmp_path / "delta" / locations[0]
    touched = _write_delta(
        extract / locations[0], delta, next_day, moved=(moved,), newcomer_phone=growing[0].removeprefix("ph|")
    )
    loaded = load_path(warehouse, delta, fmt="csv", location=locations[0], extract_date=next_day)
    assert loaded.totals["rows_loaded"] == 4 + 1 + len(touched["booked"]) + len(touched["visited"]), loaded.as_dict()

    incremental = run_dbt_build(warehouse, as_of=next_day, variables=SMALL_BLOCKS)
    assert incremental["success"], incremental
    results = json.loads((tmp_path / "state" / "dbt" / "target" / "run_results.json").read_text())["results"]
    staged = {r["unique_id"].rsplit(".", 1)[1]: r["adapter_response"].get("rows_affected") for r in results}
    assert staged["stg_emr__patients"] == 5  # the delta's rows only, not the whole extract again
    with psycopg.connect(warehouse) as conn:
        # The two records left on the shrinking phone are compared now; neither changed tonight.
        assert conn.execute(pairs_on_phone, (list(stay), list(stay))).fetchone()[0] == 1
        # The two records on the growing phone are no longer compared on it.
        assert conn.execute(pairs_on_phone, (list(growing[1]), list(growing[1]))).fetchone()[0] == 0
    after_delta = mart_fingerprints(warehouse)
    assert after_delta["marts.persons"] != before["marts.persons"]  # the delta changed something downstream

    process, _ = run_dbt(warehouse, ["build", "--full-refresh"], as_of=next_day, variables=SMALL_BLOCKS)
    assert process.returncode == 0, process.stdout[-3000:]
    assert mart_fingerprints(warehouse) == after_delta

    # A corrected re-delivery of the delta's appointments (same file, same extract date) supersedes the
    # first one: its rows leave staging (a full rebuild of that model), and the marts follow.
    with (delta / "appointments.csv").open(newline="", encoding="utf-8") as handle:
        appointments = list(csv.DictReader(handle))
    _write(delta, "appointments", appointments[:1])
    redelivered = load_path(warehouse, delta, fmt="csv", location=locations[0], extract_date=next_day)
    assert any(file.superseded for file in redelivered.files), redelivered.as_dict()
    assert run_dbt_build(warehouse, as_of=next_day, variables=SMALL_BLOCKS)["success"]
    after_redelivery = mart_fingerprints(warehouse)
    process, _ = run_dbt(warehouse, ["build", "--full-refresh"], as_of=next_day, variables=SMALL_BLOCKS)
    assert process.returncode == 0, process.stdout[-3000:]
    assert mart_fingerprints(warehouse) == after_redelivery

    # Re-deliveries of the patients file (one changed record only: the newcomer leaves, and the other
    # two records fall back to their earlier extract's rows, loads the models already hold) and the
    # encounters file (one visit of two; the other visit's record is in neither new file): the
    # incremental models downstream of staging (normalised records, clinical events) are rebuilt.
    with (delta / "patients.csv").open(newline="", encoding="utf-8") as handle:
        patients = list(csv.DictReader(handle))
    _write(delta, "patients", [row for row in patients if row["patient_id"] == touched["changed_phones"][2]])
    with (delta / "encounters.csv").open(newline="", encoding="utf-8") as handle:
        encounters = list(csv.DictReader(handle))
    _write(delta, "encounters", encounters[:1])
    redelivered = load_path(warehouse, delta, fmt="csv", location=locations[0], extract_date=next_day)
    assert sum(bool(file.superseded) for file in redelivered.files) == 2, redelivered.as_dict()
    assert run_dbt_build(warehouse, as_of=next_day, variables=SMALL_BLOCKS)["success"]
    after_second_redelivery = mart_fingerprints(warehouse)
    with psycopg.connect(warehouse) as conn:
        assert not conn.execute(
            "select 1 from intermediate.int_patients_normalised where patient_id = 'delta-new-1'"
        ).fetchall()
        visits = conn.execute(
            "select count(*) from intermediate.int_clinical_events_unioned where event_date = %s", (next_day,)
        ).fetchone()[0]
    assert visits == 1
    process, _ = run_dbt(warehouse, ["build", "--full-refresh"], as_of=next_day, variables=SMALL_BLOCKS)
    assert process.returncode == 0, process.stdout[-3000:]
    assert mart_fingerprints(warehouse) == after_second_redelivery
