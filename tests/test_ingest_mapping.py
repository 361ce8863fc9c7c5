"""Declarative source mappings: a never-seen EMR export loads with a YAML file and no code.

The BrightChart fixture (tests/fixtures/brightchart_export, described in its README) is small and
fake, with planted problems; every count below is exact. The mapping it uses,
config/mappings/example_practice_export.yml, is the worked example in docs/source-mappings.md.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from reactivation.ingest.mapping import TRANSFORMS, MappingError, load_mapping
from reactivation.ingest.pipeline import LoadSummary, load_path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MAPPING = ROOT / "config" / "mappings" / "example_practice_export.yml"
EXPORT = ROOT / "tests" / "fixtures" / "brightchart_export"
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"

# file → (entity, rows read, loaded, quarantined)
EXPECTED = {
    "patients_20231030.csv": ("patients", 9, 8, 1),  # Birthdate 02/30/1985
    "commprefs_20231030.csv": ("contact_preferences", 5, 5, 0),
    "appointments_20231030.txt": ("appointments", 7, 6, 1),  # AptStatus 9
    "procedures_20231030.csv": ("procedures", 6, 5, 1),  # the same charge posted twice
    "recall_20231030.csv": ("recalls", 5, 5, 0),
}

# file → [(line, column_name, reason)]
EXPECTED_QUARANTINE = {
    "patients_20231030.csv": [(7, "birth_date", "birth_date: unrecognised date format")],
    "appointments_20231030.txt": [
        (7, "status", "status: value not allowed (expected one of booked, cancelled, completed, no_show)")
    ],
    "procedures_20231030.csv": [(5, None, "exact duplicate of line 4")],
}


def _counts(files) -> dict[str, tuple[str, int, int, int]]:
    return {f["file"]: (f["entity"], f["rows_read"], f["rows_loaded"], f["rows_quarantined"]) for f in files}


def _load(url: str) -> LoadSummary:
    return load_path(url, EXPORT, mapping_file=MAPPING, location=None)


def _rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


# -- the example mapping ------------------------------------------------------------------------


def test_example_mapping_parses() -> None:
    mapping = load_mapping(MAPPING)
    assert (mapping.source_system, mapping.location, mapping.timezone) == ("brightchart", "downtown", "America/Denver")
    routed = {name: mapping.mapping_for(name) for name in sorted(p.name for p in EXPORT.iterdir())}
    assert {name: m.entity for name, m in routed.items() if m} == {name: e[0] for name, e in EXPECTED.items()}
    assert mapping.is_ignored("ledger_20231030.csv") and mapping.is_ignored("README.md")
    assert mapping.mapping_for("appointments_20231030.txt").delimiter == ";"
    assert mapping.mapping_for("procedures_20231030.csv").timestamp_formats[0] == "%d.%m.%Y"


def test_load_brightchart_export(any_warehouse: str) -> None:
    summary = _load(any_warehouse)
    assert (summary.source_system, summary.location_id) == ("brightchart", "downtown")
    assert _counts(f.as_dict() for f in summary.files) == EXPECTED
    assert all(f.status == "loaded" and not f.warnings for f in summary.files)
    assert summary.unrecognised == []  # the ledger and the README are ignored, not unrecognised

    manifest = _rows(
        any_warehouse,
        "select file_name, source_system, location_id, extract_date, encoding from raw.load_manifest order by load_id",
    )
    assert {row[0] for row in manifest} == set(EXPECTED)
    assert {row[1:] for row in manifest} == {("brightchart", "downtown", date(2023, 10, 30), "utf-8-sig")}

    quarantine = _rows(
        any_warehouse,
        """select m.file_name, q.source_line, q.column_name, q.reason
           from raw.quarantine q join raw.load_manifest m using (load_id)
           order by m.file_name, q.source_line""",
    )
    found: dict[str, list] = {}
    for file_name, line, column, reason in quarantine:
        found.setdefault(file_name, []).append((line, column, reason))
    assert found == EXPECTED_QUARANTINE


def test_patient_values(any_warehouse: str) -> None:
    _load(any_warehouse)
    rows = _rows(
        any_warehouse,
        """select patient_id, sex, deceased, birth_date, language, phone_e164, phone_is_valid, email_normalised,
                  household_key, guarantor_id, source_system, location_id_loaded, extra
           from raw.patients order by patient_id""",
    )
    by_id = {row[0]: row[1:] for row in rows}
    assert sorted(by_id) == ["1001", "1002", "1003", "1004", "1005", "1007", "1008", "1009"]  # 1006: bad date

    # Gender 0/1/2 through the value map; PatStatus to a boolean, and only Deceased is true.
    assert {pid: v[0] for pid, v in by_id.items()} == {
        "1001": "F", "1002": "M", "1003": "M", "1004": "F", "1005": "F", "1007": "U", "1008": "M", "1009": "F",
    }  # fmt: skip
    assert [pid for pid, v in by_id.items() if v[1]] == ["1005"]
    assert all(v[1] is False for pid, v in by_id.items() if pid != "1005")
    assert by_id["1001"][2] == date(1980, 3, 14)
    assert (by_id["1003"][3], by_id["1007"][3], by_id["1009"][3]) == ("es", "es", None)

    # A number without an area code is loaded, flagged invalid; the others are valid E.164.
    assert by_id["1003"][5] is False
    assert all(v[5] is True for pid, v in by_id.items() if pid != "1003")
    assert by_id["1001"][4] == "+13035550142"
    assert by_id["1004"][6] == "JANE.DOE@example.com"
    assert by_id["1002"][7:9] == ("1001", "1001")  # household and guarantor from one column
    assert {(v[9], v[10]) for v in by_id.values()} == {("brightchart", "downtown")}

    # SSN is dropped; unmapped columns are kept in extra, with their values, only when non-empty.
    extras = {pid: v[11] or {} for pid, v in by_id.items()}
    assert all("SSN" not in extra and "\ufeffPatNum" not in extra for extra in extras.values())
    assert extras["1002"] == {"Preferred": "Sammy", "PriProv": "7"}
    assert extras["1001"] == {"PriProv": "7"}
    ssn_anywhere = _rows(any_warehouse, "select count(*) from raw.patients where extra::text like %s", ("%999-00-%",))
    assert ssn_anywhere == [(0,)]


def test_appointment_values(any_warehouse: str) -> None:
    _load(any_warehouse)
    rows = _rows(
        any_warehouse,
        """select appointment_id, status, scheduled_at, created_at, appointment_type, provider_id, extra
           from raw.appointments order by appointment_id""",
    )
    by_id = {row[0]: row[1:] for row in rows}
    assert {aid: v[0] for aid, v in by_id.items()} == {
        "5001": "completed", "5002": "booked", "5003": "booked", "5004": "no_show", "5005": "cancelled",
        "5007": "completed",
    }  # fmt: skip
    # 10/14/2023 02:30 PM in Denver is MDT (UTC-6); 11/08/2023 09:00 AM is after DST ended (MST, UTC-7).
    assert by_id["5001"][1] == datetime(2023, 10, 14, 20, 30, tzinfo=UTC)
    assert by_id["5003"][1] == datetime(2023, 11, 8, 16, 0, tzinfo=UTC)
    assert by_id["5002"][1] == datetime(2024, 4, 15, 15, 0, tzinfo=UTC)
    assert by_id["5001"][2] == datetime(2023, 9, 1, 16, 15, tzinfo=UTC)  # ISO, no offset: also Denver
    assert (by_id["5001"][3], by_id["5001"][4]) == ("D1110", "7")
    # Op is the last field of a CRLF file: kept in extra without a stray carriage return.
    assert [v[5] for v in by_id.values()] == [{"Op": op} for op in ("OP1", "OP1", "OP2", "OP1", "OP2", "OP1")]


def test_procedure_recall_and_preference_values(any_warehouse: str) -> None:
    _load(any_warehouse)
    procedures = _rows(
        any_warehouse,
        """select patient_id, code, code_system, (performed_at at time zone 'America/Denver')::date, extra
           from raw.procedures order by patient_id, code""",
    )
    assert [row[:4] for row in procedures] == [
        ("1001", "D0274", "CDT", date(2023, 10, 14)),
        ("1001", "D1110", "CDT", date(2023, 10, 14)),
        ("1002", "D1120", "CDT", date(2023, 4, 3)),  # 03.04.2023 is day.month.year
        ("1004", "D0150", "CDT", date(2022, 10, 25)),
        ("1008", "D2391", "CDT", date(2023, 3, 1)),
    ]
    assert procedures[4][4] == {"ToothNum": "30", "ProcFee": "180.00"}
    assert procedures[2][4] == {"ProcFee": "70.00"}

    recalls = _rows(
        any_warehouse, "select recall_id, patient_id, recall_type, due_date from raw.recalls order by recall_id"
    )
    assert recalls == [
        ("801", "1001", "hygiene", date(2024, 4, 14)),
        ("802", "1002", "hygiene", date(2024, 5, 8)),
        ("803", "1003", "hygiene", date(2023, 3, 20)),
        ("804", "1004", "perio_maintenance", date(2024, 1, 2)),
        ("805", "1008", "hygiene", date(2023, 9, 1)),  # no RecallTypeNum: the default
    ]

    preferences = _rows(
        any_warehouse,
        """select patient_id, channel, status, effective_date, source
           from raw.contact_preferences order by patient_id""",
    )
    assert preferences == [
        ("1001", "sms", "opt_in", date(2023, 1, 10), "front desk"),
        ("1002", "sms", "opt_in", date(2023, 1, 10), "front desk"),
        ("1003", "sms", "opt_out", date(2023, 6, 2), "portal"),
        ("1004", "sms", "opt_in", date(2022, 11, 30), "front desk"),  # lower-case y
        ("1008", "sms", "opt_out", date(2023, 3, 1), "text reply"),
    ]


def test_reloading_the_export_is_a_no_op(warehouse: str) -> None:
    _load(warehouse)
    again = _load(warehouse)
    assert {f.file: f.status for f in again.files} == dict.fromkeys(EXPECTED, "skipped_duplicate")
    assert _rows(warehouse, "select count(*) from raw.patients") == [(8,)]


def test_location_option_overrides_the_mapping(warehouse: str) -> None:
    summary = load_path(warehouse, EXPORT, mapping_file=MAPPING, location="uptown")
    assert summary.location_id == "uptown"
    assert _rows(warehouse, "select distinct location_id_loaded from raw.patients") == [("uptown",)]


# -- mapping validation -------------------------------------------------------------------------

_BASE_FILE = "  - pattern: patients_*.csv\n    entity: patients\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("name: x\nfiles:\n  - pattern: a.csv\n    entity: patient\n", ["files[0]", "unknown entity 'patient'"]),
        (
            f"name: x\nfiles:\n{_BASE_FILE}    columns:\n      patient_number: PatNum\n",
            ["files[0]", "'patient_number' is not a column of patients"],
        ),
        (
            f"name: x\nfiles:\n{_BASE_FILE}    columns:\n      first_name: {{from: FName, transform: titlecase}}\n",
            ["files[0]", "'first_name'", "unknown transform 'titlecase'", TRANSFORMS[0]],
        ),
        ("name: x\nsource_system: y\n", ["missing required key 'files'"]),
        ("source_system: y\nfiles: []\n", ["missing required key 'name'"]),
        ("name: x\nfiles:\n  - entity: patients\n", ["files[0]", "'pattern' and 'entity'"]),
        (
            f"name: x\nfiles:\n{_BASE_FILE}    defaults:\n      favourite_colour: blue\n",
            ["files[0]", "default for unknown column 'favourite_colour'"],
        ),
        (
            f"name: x\nfiles:\n{_BASE_FILE}    columns:\n      sex: {{from: Gender, value: {{'0': M}}}}\n",
            ["files[0]", "'sex' has unknown keys ['value']"],
        ),
        (
            f"name: x\nfiles:\n{_BASE_FILE}    columns:\n      sex: {{transform: upper}}\n",
            ["files[0]", "'sex' needs 'from', 'constant' or 'default'"],
        ),
        ("name: x\nfiles: [\n", ["not valid YAML"]),
    ],
    ids=[
        "unknown-entity",
        "unknown-column",
        "unknown-transform",
        "missing-files",
        "missing-name",
        "file-without-pattern",
        "unknown-default",
        "unknown-rule-key",
        "rule-without-source",
        "bad-yaml",
    ],
)
def test_mapping_errors_name_the_file_and_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "broken_mapping.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as err:
        load_mapping(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message


def test_missing_mapping_file_is_a_mapping_error(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="mapping file not found"):
        load_mapping(tmp_path / "nowhere.yml")


# -- the Synthea mapping: the older layout without FIPS and INCOME ------------------------------


def _copy_without(source: Path, target: Path, columns: set[str]) -> None:
    with source.open(newline="", encoding="utf-8") as src, target.open("w", newline="", encoding="utf-8") as dst:
        reader = csv.reader(src)
        header = next(reader)
        keep = [i for i, name in enumerate(header) if name not in columns]
        writer = csv.writer(dst, lineterminator="\n")
        writer.writerow([header[i] for i in keep])
        for row in reader:
            writer.writerow([row[i] for i in keep])


def test_synthea_mapping_loads_the_layout_without_fips_and_income(warehouse: str, tmp_path: Path) -> None:
    v3, older = tmp_path / "v3", tmp_path / "older"
    v3.mkdir()
    older.mkdir()
    for name in ("patients.csv", "organizations.csv"):
        shutil.copy(SYNTHEA / name, v3 / name)
    shutil.copy(SYNTHEA / "organizations.csv", older / "organizations.csv")
    _copy_without(SYNTHEA / "patients.csv", older / "patients.csv", {"FIPS", "INCOME"})
    with (older / "patients.csv").open(encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    assert "FIPS" not in header and "INCOME" not in header and "COUNTY" in header

    new_summary = load_path(warehouse, v3, fmt="synthea", location="v3")
    old_summary = load_path(warehouse, older, fmt="synthea", location="older")
    new_counts = _counts(f.as_dict() for f in new_summary.files)
    old_counts = _counts(f.as_dict() for f in old_summary.files)
    assert all(f.status == "loaded" for f in old_summary.files)
    assert old_counts == new_counts
    with (SYNTHEA / "patients.csv").open(newline="", encoding="utf-8") as handle:
        patients_in_file = sum(1 for _ in csv.reader(handle)) - 1
    assert old_counts["patients.csv"] == ("patients", patients_in_file, patients_in_file, 0)

    per_location = _rows(
        warehouse,
        """select location_id_loaded, count(*), count(*) filter (where deceased),
                  count(*) filter (where extra ? 'INCOME'), count(*) filter (where extra ? 'FIPS')
           from raw.patients group by 1 order by 1""",
    )
    older_row, v3_row = per_location
    assert older_row[:3] == ("older", *v3_row[1:3])
    assert older_row[3:] == (0, 0)
    assert v3_row[3] == patients_in_file and v3_row[4] > 0
    same_patients = _rows(
        warehouse,
        """select count(*) from raw.patients o join raw.patients n using (patient_id)
           where o.location_id_loaded = 'older' and n.location_id_loaded = 'v3'
             and (o.first_name, o.last_name, o.birth_date, o.sex, o.deceased)
                 = (n.first_name, n.last_name, n.birth_date, n.sex, n.deceased)""",
    )
    assert same_patients == [(patients_in_file,)]


# -- the command line ---------------------------------------------------------------------------


def test_cli_load_with_mapping_prints_json(warehouse: str) -> None:
    result = subprocess.run(
        [
            str(BIN / "reactivation"),
            "load",
            "--mapping",
            "config/mappings/example_practice_export.yml",
            "--json",
            "tests/fixtures/brightchart_export",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "WAREHOUSE_URL": warehouse},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert (summary["source_system"], summary["location_id"]) == ("brightchart", "downtown")
    assert _counts(summary["files"]) == EXPECTED
    assert all(isinstance(f["seconds"], float | int) and f["seconds"] >= 0 for f in summary["files"])
    assert isinstance(summary["seconds"], float | int) and summary["seconds"] > 0
    assert summary["totals"]["rows_read"] == sum(e[1] for e in EXPECTED.values())
    assert summary["totals"]["rows_loaded"] == sum(e[2] for e in EXPECTED.values())
    assert summary["totals"]["rows_quarantined"] == sum(e[3] for e in EXPECTED.values())
    assert summary["unrecognised_files"] == []
    assert _rows(warehouse, "select count(*) from raw.quarantine") == [(3,)]
