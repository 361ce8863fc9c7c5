"""The loader on real PostgreSQL: nothing lost, idempotent, all-or-nothing, dirty input handled."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest

from reactivation.ingest.contract_doc import render_contract_markdown
from reactivation.ingest.loader import LoadContext, load_file
from reactivation.ingest.mapping import native_mapping
from reactivation.ingest.pipeline import load_path
from reactivation.warehouse import ensure_schema

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
PATIENT_HEADER = "patient_id,first_name,last_name,birth_date,sex,phone,email,language\n"


def _write(folder: Path, name: str, text: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def _load(url: str, folder: Path, location: str = "clinic") -> dict:
    return load_path(url, folder, fmt="csv", location=location).as_dict()


def _file(summary: dict, name: str) -> dict:
    return next(f for f in summary["files"] if f["file"] == name)


def _quarantine(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select source_line, column_name, reason from raw.quarantine order by load_id, source_line"
        ).fetchall()


def test_contract_page_matches_the_code() -> None:
    assert (ROOT / "docs" / "extract-contract.md").read_text() == render_contract_markdown(), (
        "docs/extract-contract.md is stale: regenerate with `reactivation contract > docs/extract-contract.md`"
    )


def test_synthea_sample_loads_completely(any_warehouse: str) -> None:
    summary = load_path(any_warehouse, SYNTHEA, fmt="synthea", location="nebraska").as_dict()
    files = {f["file"]: f for f in summary["files"]}
    expected_rows = {
        name: len((SYNTHEA / name).read_text().splitlines()) - 1
        for name in (
            "organizations.csv",
            "providers.csv",
            "patients.csv",
            "encounters.csv",
            "conditions.csv",
            "procedures.csv",
            "careplans.csv",
        )
    }
    assert {name: f["rows_read"] for name, f in files.items()} == expected_rows
    for f in files.values():
        assert f["status"] == "loaded"
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"]
    assert summary["unrecognised_files"] == []
    with psycopg.connect(any_warehouse) as conn:
        deceased = conn.execute("select count(*) from raw.patients where deceased").fetchone()[0]
        zones = conn.execute("select distinct timezone from raw.locations").fetchall()
        extra_keys = conn.execute(
            "select count(*) from raw.patients where extra ? 'SSN' or extra ? 'PASSPORT' or extra ? 'DRIVERS'"
        ).fetchone()[0]
    assert deceased == 11  # the sample's README: 111 patients, 11 deceased
    assert zones == [("America/Chicago",)]
    assert extra_keys == 0, "identity documents are dropped at load"


def test_same_file_again_is_a_no_op(any_warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "patients.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\n")
    first = _load(any_warehouse, tmp_path)
    second = _load(any_warehouse, tmp_path)
    assert _file(first, "patients.csv")["status"] == "loaded"
    assert _file(second, "patients.csv")["status"] == "skipped_duplicate"
    with psycopg.connect(any_warehouse) as conn:
        assert conn.execute("select count(*) from raw.patients").fetchone()[0] == 1
        assert conn.execute("select count(*) from raw.load_manifest").fetchone()[0] == 1


def test_bom_crlf_quoted_newlines_and_line_numbers(warehouse: str, tmp_path: Path) -> None:
    text = (
        "\ufeff"
        + PATIENT_HEADER.replace("\n", "\r\n")
        + 'p1,"Ann\r\nMarie",Lee,1980-01-02,F,,,en\r\n'
        + "p2,Bob,Ray,not-a-date,M,,,en\r\n"
    )
    _write(tmp_path, "patients.csv", text)
    summary = _load(warehouse, tmp_path)
    result = _file(summary, "patients.csv")
    assert (result["rows_read"], result["rows_loaded"], result["rows_quarantined"]) == (2, 1, 1)
    # p2 starts on line 4 of the file: the quoted newline in p1 spans lines 2-3.
    assert _quarantine(warehouse) == [(4, "birth_date", "birth_date: unrecognised date format")]
    with psycopg.connect(warehouse) as conn:
        first_name = conn.execute("select first_name from raw.patients").fetchone()[0]
    assert first_name == "Ann\r\nMarie"


def test_non_utf8_file_is_read_with_a_recorded_warning(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "patients.csv", (PATIENT_HEADER + "p1,Jos\xe9,Pe\xf1a,1980-01-02,M,,,es\n").encode("cp1252"))
    result = _file(_load(warehouse, tmp_path), "patients.csv")
    assert result["status"] == "loaded" and result["rows_loaded"] == 1
    assert result["warnings"] == ["file is not valid UTF-8; read as cp1252"]
    with psycopg.connect(warehouse) as conn:
        name, encoding, warnings = conn.execute(
            "select p.first_name, m.encoding, m.warnings from raw.patients p join raw.load_manifest m using (load_id)"
        ).fetchone()
    assert (name, encoding, warnings) == ("José", "cp1252", ["file is not valid UTF-8; read as cp1252"])


def test_extra_columns_are_kept(warehouse: str, tmp_path: Path) -> None:
    header = PATIENT_HEADER.strip() + ",chart_color,referral_source\n"
    _write(tmp_path, "patients.csv", header + "p1,Ann,Lee,1980-01-02,F,,,en,blue,\n")
    _load(warehouse, tmp_path)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select extra from raw.patients").fetchone()[0] == {"chart_color": "blue"}


def test_missing_required_columns_reject_the_file_and_keep_good_data(warehouse: str, tmp_path: Path) -> None:
    good = tmp_path / "good"
    _write(good, "patients_2026-11-01.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\n")
    _load(warehouse, good)
    bad = tmp_path / "bad"
    _write(bad, "patients_2026-11-02.csv", "patient_id,first_name,sex\np2,Bob,M\n")
    result = _file(_load(warehouse, bad), "patients_2026-11-02.csv")
    assert result["status"] == "rejected"
    assert "last_name" in result["message"] and "birth_date" in result["message"]
    with psycopg.connect(warehouse) as conn:
        rows = conn.execute("select patient_id from raw.patients").fetchall()
        statuses = conn.execute("select file_name, status, message from raw.load_manifest order by load_id").fetchall()
    assert rows == [("p1",)], "the rejected file left the previous good data in place, and added nothing"
    assert [s[:2] for s in statuses] == [("patients_2026-11-01.csv", "loaded"), ("patients_2026-11-02.csv", "rejected")]
    assert "missing required column" in statuses[1][2]


def test_empty_header_only_and_truncated_files(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "patients.csv", b"")
    _write(tmp_path, "appointments.csv", "appointment_id,patient_id,status,scheduled_at\n")
    _write(tmp_path, "encounters.csv", "encounter_id,patient_id,encounter_date\ne1,p1,2023-01-02\ne2,p1,20")
    summary = _load(warehouse, tmp_path)
    empty = _file(summary, "patients.csv")
    assert empty["status"] == "rejected" and "empty" in empty["message"]
    header_only = _file(summary, "appointments.csv")
    assert header_only["status"] == "loaded" and header_only["rows_read"] == 0
    assert "the file has a header but no rows" in header_only["warnings"]
    truncated = _file(summary, "encounters.csv")
    assert (truncated["rows_read"], truncated["rows_loaded"], truncated["rows_quarantined"]) == (2, 1, 1)
    assert _quarantine(warehouse) == [(3, "encounter_date", "encounter_date: unrecognised timestamp format")]


def test_ragged_rows_are_quarantined(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "patients.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\np2,Bob\n")
    result = _file(_load(warehouse, tmp_path), "patients.csv")
    assert (result["rows_loaded"], result["rows_quarantined"]) == (1, 1)
    line, column, reason = _quarantine(warehouse)[0]
    assert (line, column) == (3, None) and "fewer than the header" in reason


def test_dates_in_several_formats(warehouse: str, tmp_path: Path) -> None:
    rows = ["p1,A,B,1980-01-02,F", "p2,A,B,01/02/1980,F", "p3,A,B,19800102,F", "p4,A,B,02-Jan-1980,F"]
    _write(tmp_path, "patients.csv", "patient_id,first_name,last_name,birth_date,sex\n" + "\n".join(rows) + "\n")
    _load(warehouse, tmp_path)
    with psycopg.connect(warehouse) as conn:
        dates = {r[0] for r in conn.execute("select birth_date from raw.patients").fetchall()}
    assert dates == {date(1980, 1, 2)}


def test_exact_duplicate_rows_are_quarantined(warehouse: str, tmp_path: Path) -> None:
    row = "p1,Ann,Lee,1980-01-02,F,,,en\n"
    _write(tmp_path, "patients.csv", PATIENT_HEADER + row + "p2,Bob,Ray,1970-05-06,M,,,en\n" + row)
    result = _file(_load(warehouse, tmp_path), "patients.csv")
    assert (result["rows_read"], result["rows_loaded"], result["rows_quarantined"]) == (3, 2, 1)
    assert _quarantine(warehouse) == [(4, None, "exact duplicate of line 2")]


def test_corrected_file_for_the_same_extract_date_supersedes(warehouse: str, tmp_path: Path) -> None:
    first, corrected = tmp_path / "first", tmp_path / "corrected"
    _write(first, "patients_20261101.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\np2,Bob,Ray,1970,M,,,en\n")
    _write(corrected, "patients_20261101.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\n")
    _load(warehouse, first)
    result = _file(_load(warehouse, corrected), "patients_20261101.csv")
    assert result["status"] == "loaded" and len(result["superseded"]) == 1
    with psycopg.connect(warehouse) as conn:
        manifest = conn.execute(
            "select status, superseded_by, extract_date from raw.load_manifest order by load_id"
        ).fetchall()
    assert manifest == [
        ("superseded", result["load_id"], date(2026, 11, 1)),
        ("loaded", None, date(2026, 11, 1)),
    ]


def test_phone_email_normalisation(warehouse: str, tmp_path: Path) -> None:
    rows = [
        "p1,A,B,1980-01-02,F,(402) 318-5521,Ann.Lee@Example.COM,en",
        "p2,A,B,1980-01-02,F,123,not-an-email,en",
        "p3,A,B,1980-01-02,F,+1 212 555 0199,a..b@example.com,en",
        "p4,A,B,1980-01-02,F,,,en",
    ]
    _write(tmp_path, "patients.csv", PATIENT_HEADER + "\n".join(rows) + "\n")
    _load(warehouse, tmp_path)
    with psycopg.connect(warehouse) as conn:
        got = conn.execute(
            "select patient_id, phone_e164, phone_is_valid, email_normalised, email_is_valid "
            "from raw.patients order by patient_id"
        ).fetchall()
    assert got == [
        ("p1", "+14023185521", True, "Ann.Lee@example.com", True),
        ("p2", None, False, "not-an-email", False),
        ("p3", "+12125550199", True, "a..b@example.com", False),
        ("p4", None, None, None, None),
    ]


def test_a_files_rows_appear_all_at_once_or_not_at_all(warehouse: str, tmp_path: Path) -> None:
    """While a multi-batch file streams in, another session sees none of it; a failure mid-file leaves nothing."""
    lines = [f"p{i},Name{i},Family{i},1980-01-02,F,,,en" for i in range(120_000)]
    path = _write(tmp_path, "patients.csv", PATIENT_HEADER + "\n".join(lines) + "\n")
    assert path.stat().st_size > 3 * (1 << 20)
    ensure_schema(warehouse)
    seen_mid_load: list[int] = []
    read = {"bytes": 0}

    def observe(n: int) -> None:
        read["bytes"] += n
        if read["bytes"] > 2 * (1 << 20) and not seen_mid_load:
            with psycopg.connect(warehouse) as other:
                seen_mid_load.append(other.execute("select count(*) from raw.patients").fetchone()[0])

    mapping = native_mapping().mapping_for("patients.csv")
    with psycopg.connect(warehouse) as conn:
        result = load_file(conn, path, mapping, LoadContext("native_csv", "clinic"), progress=observe)
    assert seen_mid_load == [0]
    assert result.rows_loaded == 120_000

    class Interrupted(Exception):
        pass

    def fail_midway(n: int) -> None:
        read["bytes"] += n
        if read["bytes"] > 2 * (1 << 20):
            raise Interrupted

    path.write_text(PATIENT_HEADER + "\n".join(lines[:-1]) + "\n")  # a different file (new sha256)
    read["bytes"] = 0
    with psycopg.connect(warehouse) as conn, pytest.raises(Interrupted):
        load_file(conn, path, mapping, LoadContext("native_csv", "clinic"), progress=fail_midway)
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.patients").fetchone()[0] == 120_000
        assert conn.execute("select count(*) from raw.load_manifest").fetchone()[0] == 1


def test_cli_load_json_summary(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "patients.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\np2,Bob,Ray,bad,M,,,en\n")
    env = {"WAREHOUSE_URL": warehouse, "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "reactivation"),
            "load",
            "--format",
            "csv",
            "--location",
            "c1",
            "--json",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["totals"]["rows_read"] == 2
    file = summary["files"][0]
    assert {k: file[k] for k in ("file", "entity", "rows_read", "rows_loaded", "rows_quarantined")} == {
        "file": "patients.csv",
        "entity": "patients",
        "rows_read": 2,
        "rows_loaded": 1,
        "rows_quarantined": 1,
    }
    assert isinstance(file["seconds"], float)
    assert "Bob" not in proc.stdout + proc.stderr


def test_naive_timestamps_are_local_to_a_single_location_extract(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "locations.csv", "location_id,name,timezone\nden,Denver Dental,America/Denver\n")
    _write(
        tmp_path,
        "appointments.csv",
        "appointment_id,patient_id,status,scheduled_at\n"
        "a1,p1,booked,2026-11-20 09:00\n"
        "a2,p1,booked,2026-11-20T09:00Z\n",
    )
    _load(warehouse, tmp_path)
    with psycopg.connect(warehouse) as conn:
        conn.execute("set timezone = 'UTC'")
        got = conn.execute("select appointment_id, scheduled_at::text from raw.appointments order by 1").fetchall()
    assert got == [("a1", "2026-11-20 16:00:00+00"), ("a2", "2026-11-20 09:00:00+00")]


def test_an_unknown_time_zone_is_quarantined(warehouse: str, tmp_path: Path) -> None:
    _write(tmp_path, "locations.csv", "location_id,name,timezone\nx,X Clinic,Mars/Olympus\n")
    result = _file(_load(warehouse, tmp_path), "locations.csv")
    assert (result["rows_loaded"], result["rows_quarantined"]) == (0, 1)
    assert _quarantine(warehouse)[0][1] == "timezone"


@pytest.mark.parametrize("workers", [1, 2])
def test_each_file_commits_on_its_own(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """Files are committed one at a time: when a file starts, another session already sees every file loaded
    before it (manifest row and rows), and a crash mid-folder keeps them and leaves no trace of the file it hit."""
    from reactivation.ingest import pipeline

    _write(tmp_path, "locations.csv", "location_id,name,timezone\nden,Denver Dental,America/Denver\n")
    _write(tmp_path, "patients.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\np2,Bob,Ray,1970-05-06,M,,,en\n")
    _write(tmp_path, "appointments.csv", "appointment_id,patient_id,status,scheduled_at\na1,p1,booked,2026-11-20\n")
    _write(tmp_path, "encounters.csv", "encounter_id,patient_id,encounter_date\ne1,p1,2023-01-02\n")
    counted = {"locations.csv": "raw.locations", "patients.csv": "raw.patients", "appointments.csv": "raw.appointments"}

    class Interrupted(Exception):
        pass

    finished: list[str] = []  # files whose load_file has returned, in order
    seen: dict[str, tuple[list[str], dict[str, int]]] = {}  # file -> (finished, visible elsewhere) when it started
    real_load_file = pipeline.load_file

    def observed_load_file(conn, path, mapping, context, **kwargs):
        def hook(n: int) -> None:
            if path.name not in seen:
                done = list(finished)
                with psycopg.connect(warehouse) as other:
                    loaded = other.execute(
                        "select file_name, rows_loaded from raw.load_manifest where status = 'loaded'"
                    ).fetchall()
                    visible = {
                        name: other.execute(f"select count(*) from {counted[name]}").fetchone()[0] for name, _ in loaded
                    }
                    assert visible == dict(loaded), "a manifest row is visible without its rows, or the reverse"
                seen[path.name] = (done, visible)
                if path.name == "encounters.csv":
                    raise Interrupted

        result = real_load_file(conn, path, mapping, context, **{**kwargs, "progress": hook})
        finished.append(path.name)
        return result

    monkeypatch.setattr(pipeline, "load_file", observed_load_file)
    with pytest.raises(Interrupted):
        load_path(warehouse, tmp_path, fmt="csv", location="clinic", workers=workers)
    for name, (done, visible) in seen.items():
        assert set(done) <= set(visible), f"when {name} started, files loaded before it were not committed"
    if workers == 1:
        assert finished == ["locations.csv", "patients.csv", "appointments.csv"]
        assert seen["encounters.csv"][1] == {"locations.csv": 1, "patients.csv": 2, "appointments.csv": 1}
    else:  # the other worker finishes the file it has (and starts no other), whichever that is
        assert finished[0] == "locations.csv" and "encounters.csv" not in finished
    with psycopg.connect(warehouse) as conn:
        manifest = conn.execute("select file_name, status from raw.load_manifest order by load_id").fetchall()
        rows = {name: conn.execute(f"select count(*) from {t}").fetchone()[0] for name, t in counted.items()}
        encounters = conn.execute("select count(*) from raw.encounters").fetchone()[0]
    assert manifest == [(name, "loaded") for name in counted if name in finished]
    assert rows == {name: ({"patients.csv": 2}.get(name, 1) if name in finished else 0) for name in counted}
    assert encounters == 0


def test_load_file_refuses_a_connection_with_a_transaction_open(warehouse: str, tmp_path: Path) -> None:
    path = _write(tmp_path, "patients.csv", PATIENT_HEADER + "p1,Ann,Lee,1980-01-02,F,,,en\n")
    ensure_schema(warehouse)
    with psycopg.connect(warehouse) as conn:
        conn.execute("select 1")  # a plain connection's first query opens a transaction that stays open
        with pytest.raises(ValueError, match="no transaction open"):
            load_file(conn, path, native_mapping().mapping_for("patients.csv"), LoadContext("native_csv", "clinic"))


def _raw_snapshot(url: str) -> dict[str, list[tuple]]:
    """Every raw table's rows, sorted; the manifest without its timestamps."""
    snapshot = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' order by 1"
        ).fetchall()
        for (table,) in tables:
            columns = [
                name
                for (name,) in conn.execute(
                    """select column_name from information_schema.columns
                       where table_schema = 'raw' and table_name = %s order by ordinal_position""",
                    (table,),
                ).fetchall()
                if name not in {"started_at", "finished_at"}
            ]
            listed = ", ".join(columns)
            order = ", ".join(str(n + 1) for n in range(len(columns)))
            snapshot[table] = conn.execute(f"select {listed} from raw.{table} order by {order}").fetchall()
    return snapshot


def test_parallel_load_stores_what_a_one_worker_load_stores(warehouse: str, tmp_path: Path) -> None:
    """Two workers give the same raw tables, quarantine, manifest (load ids included) and summary as one."""
    from reactivation.generate import generate_extract

    generate_extract(tmp_path / "extract", patients=1500, locations=1, seed=7, workers=1)
    folder = tmp_path / "extract" / "loc_01"
    (folder / "patients_copy.csv").write_bytes((folder / "patients.csv").read_bytes())  # same bytes: a no-op
    _write(folder, "appointments_broken.csv", "appointment_id,status\na1,booked\n")  # rejected
    encounters = (folder / "encounters.csv").read_text().splitlines()
    dirty = [encounters[0], *encounters[1:40], encounters[5], encounters[6].replace("-", "/", 1), "e,x,20"]
    _write(folder, "encounters_late.csv", "\n".join(dirty) + "\n")  # duplicates, a bad date, a ragged row

    def load(workers: int) -> tuple[list[dict], dict]:
        summary = load_path(warehouse, folder, fmt="csv", location="loc_01", workers=workers).as_dict()
        files = [{k: v for k, v in f.items() if k != "seconds"} for f in summary["files"]]
        snapshot = _raw_snapshot(warehouse)
        with psycopg.connect(warehouse, autocommit=True) as conn:
            conn.execute("drop schema raw cascade")  # the next load starts afresh, its sequence included
        return files, snapshot

    one_files, one = load(1)
    two_files, two = load(2)
    statuses = {f["file"]: f["status"] for f in one_files}
    assert statuses["patients_copy.csv"] == "skipped_duplicate"
    assert statuses["appointments_broken.csv"] == "rejected"
    assert one_files[0]["file"] == "locations.csv"
    assert sum(f["rows_quarantined"] for f in one_files) >= 3
    assert len(one["quarantine"]) >= 3 and len(one["load_manifest"]) == len(one_files) - 1
    assert two_files == one_files
    assert two == one
