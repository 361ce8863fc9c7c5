"""The synthetic extract generator: deterministic, self-consistent, and exact about its dirt.

Why: downstream tests (loading, identity matching, care gaps) score themselves against
``expected.json``, so every number in it must be what the files hold and what the real loader
does with them. These tests count the files independently and load every location folder into
a fresh warehouse with the production loader.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, datetime
from pathlib import Path

import psycopg
import pytest

from reactivation.generate import DIRT_KEYS, GenerateError, generate_extract
from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.pipeline import load_path

AS_OF = date(2026, 11, 1)
PATIENTS = 1_000
LOCATIONS = 3
SEED = 20261101


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("extract") / "out"
    returned = generate_extract(out, patients=PATIENTS, locations=LOCATIONS, seed=SEED, as_of=AS_OF)
    return out, returned


def test_same_seed_gives_identical_files_and_another_seed_does_not(extract: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = extract
    again = tmp_path / "again"
    generate_extract(again, patients=PATIENTS, locations=LOCATIONS, seed=SEED, as_of=AS_OF, workers=2)
    other = tmp_path / "other"
    generate_extract(other, patients=PATIENTS, locations=LOCATIONS, seed=SEED + 1, as_of=AS_OF)

    first, second, third = _hashes(out), _hashes(again), _hashes(other)
    assert len(first) == LOCATIONS * len(ENTITIES) + 2  # + expected.json + truth/duplicates.csv
    assert first == second
    assert first.keys() == third.keys()
    differing = [name for name in first if first[name] != third[name]]
    assert set(differing) >= {
        f"loc_0{i}/{entity}.csv" for i in range(1, LOCATIONS + 1) for entity in ("patients", "appointments")
    }


def test_multi_chunk_output_does_not_depend_on_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reactivation import generate

    monkeypatch.setattr(generate, "CHUNK_PERSONS", 150)  # 4 chunks
    generate_extract(tmp_path / "one", patients=500, locations=2, seed=3, as_of=AS_OF, workers=1)
    generate_extract(tmp_path / "two", patients=500, locations=2, seed=3, as_of=AS_OF, workers=2)
    assert _hashes(tmp_path / "one") == _hashes(tmp_path / "two")


def test_refuses_a_non_empty_folder_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(GenerateError):
        generate_extract(tmp_path, patients=10, locations=1, seed=1, as_of=AS_OF)
    with pytest.raises(GenerateError):
        generate_extract(tmp_path / "a", patients=0, locations=1, seed=1, as_of=AS_OF)
    with pytest.raises(GenerateError):
        generate_extract(tmp_path / "b", patients=10, locations=100, seed=1, as_of=AS_OF)


def test_expected_json_matches_the_files(extract: tuple[Path, dict]) -> None:
    out, returned = extract
    expected = json.loads((out / "expected.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in expected.items() if k != "truth"} == returned
    assert [loc["location_id"] for loc in expected["locations"]] == [f"loc_0{i}" for i in range(1, LOCATIONS + 1)]
    assert {loc["kind"] for loc in expected["locations"]} == {"dental", "medical"}

    as_of = AS_OF.isoformat()
    totals = {entity: 0 for entity in ENTITIES}
    for loc in expected["locations"]:
        location_id = loc["location_id"]
        block = expected["per_location"][location_id]
        folder = out / location_id
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{e}.csv" for e in ENTITIES)
        data = {}
        for entity, spec in ENTITIES.items():
            with (folder / f"{entity}.csv").open(encoding="utf-8", newline="") as handle:
                reader = csv.reader(handle)
                assert next(reader) == spec.column_names
                body = list(reader)
            assert all(len(row) == len(spec.column_names) for row in body)
            assert len(body) == block["rows"][entity], (location_id, entity)
            totals[entity] += len(body)
            data[entity] = [dict(zip(spec.column_names, row, strict=True)) for row in body]

        (location_row,) = data["locations"]
        assert location_row["location_id"] == location_id and location_row["timezone"].startswith("America/")

        def bad_timestamp(value: str) -> bool:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return True
            return False

        appointments, encounters = data["appointments"], data["encounters"]
        dirt = block["dirt"]
        assert sum(bad_timestamp(a["scheduled_at"]) for a in appointments) == dirt["invalid_appointment_dates"]
        assert sum(not e["patient_id"] for e in encounters) == dirt["encounters_missing_patient_id"]
        assert block["quarantined"]["appointments"] == dirt["invalid_appointment_dates"] >= 1
        assert block["quarantined"]["encounters"] == dirt["encounters_missing_patient_id"] >= 1
        assert sum(block["quarantined"].values()) == (
            block["quarantined"]["appointments"] + block["quarantined"]["encounters"]
        )
        future = [a for a in appointments if a["status"] == "booked" and a["scheduled_at"][:10] > as_of]
        assert len(future) == dirt["future_appointments"]
        assert sum(p["deceased"] == "true" for p in data["patients"]) == dirt["deceased"]
        assert all(p["deceased_date"] for p in data["patients"] if p["deceased"] == "true")
        prefs = data["contact_preferences"]
        for channel in ("sms", "email", "call"):
            opted_out = sum(p["channel"] == channel and p["status"] == "opt_out" for p in prefs)
            assert opted_out == dirt[f"{channel}_opt_outs"]
        assert sum(r["status"] == "ordered" for r in data["referrals"]) == dirt["open_referrals"]
        unscheduled = sum(t["status"] in ("presented", "accepted") for t in data["treatment_plans"])
        assert unscheduled == dirt["unscheduled_treatment_plans"]
        not_now = [r for r in data["recalls"] if r["recall_type"] == "not_now"]
        assert len(not_now) == dirt["not_now_recalls"] and all(r["due_date"] > as_of for r in not_now)
        assert sum(h["hold_type"] == "do_not_contact" for h in data["holds"]) == dirt["do_not_contact_holds"]
        assert sum(h["hold_type"] == "clinical_hold" for h in data["holds"]) == dirt["clinical_holds"]
        ids = [p["patient_id"] for p in data["patients"]]
        assert len(ids) == len(set(ids))

    assert totals == expected["totals"]["rows"]
    for key in DIRT_KEYS:
        assert expected["totals"]["dirt"][key] == sum(b["dirt"][key] for b in expected["per_location"].values())

    # Ground truth: every group is one person with records that exist, and the counts agree.
    truth_rows = _rows(out / "truth" / "duplicates.csv")
    groups: dict[str, list[tuple[str, str]]] = {}
    for row in truth_rows:
        groups.setdefault(row["person_key"], []).append((row["location_id"], row["patient_id"]))
    assert [g["person_key"] for g in expected["truth"]] == list(groups)
    assert len(groups) == expected["truth_groups"] > 0
    assert all(len(records) >= 2 for records in groups.values())
    patient_ids = {
        (loc["location_id"], p["patient_id"])
        for loc in expected["locations"]
        for p in _rows(out / loc["location_id"] / "patients.csv")
    }
    assert all(record in patient_ids for records in groups.values() for record in records)
    dirt = expected["totals"]["dirt"]
    assert len(truth_rows) - len(groups) == (
        dirt["duplicate_records_cross_location"] + dirt["duplicate_records_within_location"]
    )
    assert dirt["duplicate_records_cross_location"] > 0 and dirt["duplicate_records_within_location"] > 0

    # Proportions are in the brief's ranges (loose: 1,000 people is a small sample).
    persons = expected["persons"]
    assert 9 <= sum(totals.values()) / persons <= 13
    assert 0.02 <= dirt["bad_phones"] / persons <= 0.07
    assert 0.01 <= dirt["bad_emails"] / persons <= 0.06
    assert 0.30 <= dirt["dormant_18_months"] / totals["patients"] <= 0.60


def test_loader_agrees_with_expected_json(extract: tuple[Path, dict], warehouse: str) -> None:
    out, expected = extract
    rows_in_files = 0
    for loc in expected["locations"]:
        location_id = loc["location_id"]
        block = expected["per_location"][location_id]
        summary = load_path(warehouse, out / location_id, fmt="csv", location=location_id)
        assert summary.unrecognised == []
        assert {f.status for f in summary.files} == {"loaded"}, [f.message for f in summary.files]
        assert {f.entity: f.rows_read for f in summary.files} == block["rows"]
        assert {f.entity: f.rows_quarantined for f in summary.files} == block["quarantined"]
        rows_in_files += summary.totals["rows_read"]

    assert rows_in_files == sum(expected["totals"]["rows"].values())
    with psycopg.connect(warehouse) as conn:
        per_location = {
            row[0]: row[1:]
            for row in conn.execute(
                """select location_id_loaded,
                          count(*),
                          count(*) filter (where phone_is_valid = false),
                          count(*) filter (where email_is_valid = false),
                          count(*) filter (where deceased)
                   from raw.patients group by 1"""
            ).fetchall()
        }
        quarantined = conn.execute("select count(*) from raw.quarantine").fetchone()[0]
    for location_id, block in expected["per_location"].items():
        dirt = block["dirt"]
        assert per_location[location_id] == (
            block["rows"]["patients"],
            dirt["bad_phones"],
            dirt["bad_emails"],
            dirt["deceased"],
        ), location_id
    assert quarantined == sum(expected["totals"]["quarantined"].values())
