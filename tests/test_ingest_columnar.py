"""The loader's column-at-a-time path (Arrow) stores exactly what its row reader stores, and knows when not to run.

Every test loads the same files twice into fresh raw schemas, once as the loader chooses and once with the
columnar path switched off, and compares every raw table, the quarantine and the manifest (load ids
included), and records which files the columnar path loaded, so that a test fails if it silently stops
being used.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from test_ingest_loader import _raw_snapshot

from reactivation.ingest import columnar
from reactivation.ingest.pipeline import load_path

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
MAPPED = ROOT / "tests" / "fixtures" / "brightchart_export"
EXAMPLE_MAPPING = ROOT / "config" / "mappings" / "example_practice_export.yml"


def _load_both(
    url: str, monkeypatch: pytest.MonkeyPatch, load: Callable[[], dict]
) -> tuple[dict, dict, dict[str, str]]:
    """(snapshot by the loader's choice, snapshot by the row reader, file -> 'columnar' | 'rows')."""
    paths: dict[str, str] = {}
    real_stream = columnar.stream

    def spying_stream(path: Path, *args, **kwargs) -> None:
        try:
            real_stream(path, *args, **kwargs)
        except columnar.NotColumnar:
            paths[path.name] = "rows"
            raise
        paths[path.name] = "columnar"

    def snapshot_and_reset() -> tuple[dict, dict]:
        summary = load()
        files = [{k: v for k, v in f.items() if k != "seconds"} for f in summary["files"]]
        snapshot = _raw_snapshot(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("drop schema raw cascade")  # the next load starts afresh, its sequence included
        return snapshot, {"files": files}

    with monkeypatch.context() as patch:
        patch.setattr(columnar, "stream", spying_stream)
        chosen, chosen_files = snapshot_and_reset()
        patch.setattr(columnar, "applies", lambda encoding, delimiter: False)
        rows, rows_files = snapshot_and_reset()
    assert chosen_files == rows_files
    return chosen, rows, paths


def _dirty(text: str, seed: int) -> str:
    """The rows of a clean CSV with cells spoilt the ways real exports are, at random, one line per row."""
    rng = random.Random(seed)
    spoilers = [
        lambda v: f"  {v}\t",
        lambda v: f"\xa0{v}\u2003",
        lambda v: f"\x1c{v}",
        lambda v: v.upper(),
        lambda v: v.replace("-", "/"),
        lambda v: "",
        lambda v: f"{v}\\x",
        lambda v: f'"{v}, ""quoted"""',
        lambda v: '"tab\there"',
        lambda v: "2023-02-30",
        lambda v: "0000-01-01",
        lambda v: "2023-13-01",
        lambda v: "2023-03-04T24:00:00",
        lambda v: "2023-03-04T23:59:60",
        lambda v: "2023-03-04T10:00:00+02:00",
        lambda v: "03/04/2023",
        lambda v: "04.03.2023 10:15",
        lambda v: "No-Show",
        lambda v: " 402.680.2498 ",
        lambda v: "+44 20 7946 0958",
        lambda v: "SOMEONE@Example.COM",
        lambda v: "not-an-email@",
        lambda v: "yes",
        lambda v: '"1,234.50"',
        lambda v: "Ω≈ç√",
        lambda v: "a\\b",
    ]
    lines = text.splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        if rng.random() < 0.3 and '"' not in line:
            cells = line.split(",")
            i = rng.randrange(len(cells))
            cells[i] = rng.choice(spoilers)(cells[i])
            line = ",".join(cells)
        out.append(line)
        if rng.random() < 0.02:
            out.append(line)  # an exact repeat
    return "\n".join(out) + "\n"


def test_dirty_generated_extract_stores_the_same_rows(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reactivation.generate import generate_extract

    generate_extract(tmp_path / "extract", patients=800, locations=1, seed=11, workers=1)
    folder = tmp_path / "extract" / "loc_01"
    for seed, path in enumerate(sorted(folder.glob("*.csv"))):
        if path.name != "locations.csv":
            path.write_text(_dirty(path.read_text(), seed), encoding="utf-8")
    chosen, rows, paths = _load_both(
        warehouse, monkeypatch, lambda: load_path(warehouse, folder, fmt="csv", location="loc_01").as_dict()
    )
    assert chosen == rows
    assert len(chosen["quarantine"]) > 50  # the spoilt cells were found
    assert {name for name, way in paths.items() if way == "columnar"} >= {
        "patients.csv",
        "appointments.csv",
        "encounters.csv",
        "procedures.csv",
    }


PATIENT_HEADER = "patient_id,first_name,last_name,birth_date,sex,phone,email,language"


def _patients_both_ways(
    warehouse: str, folder: Path, monkeypatch: pytest.MonkeyPatch, data: bytes
) -> tuple[dict, dict, dict[str, str]]:
    """Load ``data`` as the folder's patients.csv both ways (see ``_load_both``); also assert they agree."""
    (folder / "patients.csv").write_bytes(data)
    chosen, by_rows, paths = _load_both(
        warehouse, monkeypatch, lambda: load_path(warehouse, folder, fmt="csv", location="c").as_dict()
    )
    assert chosen == by_rows
    return chosen, by_rows, paths


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings_and_bom_stay_columnar(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    rows = [
        PATIENT_HEADER,
        "p1,Ann,Lee,1980-01-02,F,402-680-2498,ann@example.com,en",
        'p2,"Bo, Jr.",Park,1975-13-01,M,,,es',
        "p3,Cy,Moss,1990-07-08,X,(402) 555-0199,cy@,en",
    ]
    data = ("\ufeff" + ending.join(rows)).encode("utf-8")  # no line break after the last row
    chosen, _, paths = _patients_both_ways(warehouse, tmp_path, monkeypatch, data)
    assert paths == {"patients.csv": "columnar"}
    assert [row[0] for row in chosen["quarantine"]] == [chosen["load_manifest"][0][0]] * 2
    assert sorted(row[1] for row in chosen["quarantine"]) == [3, 4]  # line numbers survive every ending


@pytest.mark.parametrize("birth_date", ["0000-01-01", "2023-02-29", "2024-02-29", "1980-1-2", " 1980-01-02 "])
def test_dates_arrow_would_take_are_judged_as_python_judges_them(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, birth_date: str
) -> None:
    rows = [PATIENT_HEADER, "p1,Ann,Lee,1980-01-02,F,,,en", f"p2,Bo,Park,{birth_date},M,,,es"]
    chosen, _, paths = _patients_both_ways(warehouse, tmp_path, monkeypatch, ("\n".join(rows) + "\n").encode())
    assert paths == {"patients.csv": "columnar"}
    if birth_date in {"0000-01-01", "2023-02-29"}:  # no year 0; 2023 is not a leap year
        assert len(chosen["quarantine"]) == 1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("p1,Ann,Lee,1980-01-02,F,,,en\n\np2,Bo,Park,1975-03-01,M,,,es\n", id="blank line"),
        pytest.param('p1,"Ann\nMarie",Lee,1980-01-02,F,,,en\np2,Bo,Park,1975-03-01,M,,,es\n', id="quoted newline"),
        pytest.param("p1,Ann,Lee,1980-01-02,F,,,en,extra\np2,Bo,Park,1975-03-01,M,,,es\n", id="ragged row"),
        pytest.param('p1,"Ann,Lee,1980-01-02,F,,,en\np2,Bo,Park,1975-03-01,M,,,es\n', id="unterminated quote"),
        pytest.param("p1,Ann,Lee,1980-01-02,F,,,en\n   \np2,Bo,Park,1975-03-01,M,,,es\n", id="spaces line"),
        pytest.param("p1,Ann,Lee,1980-01-02,F,,,en\np2,Bo,Park,1975-03-01,M,,,es\n\n\n", id="trailing blanks"),
    ],
)
def test_files_whose_rows_and_lines_differ_go_row_by_row(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    _, _, paths = _patients_both_ways(warehouse, tmp_path, monkeypatch, (PATIENT_HEADER + "\n" + body).encode())
    assert paths == {"patients.csv": "rows"}  # tried, gave up, rolled back, loaded row by row


def test_synthea_and_mapped_exports_store_the_same_rows(warehouse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen, rows, paths = _load_both(
        warehouse, monkeypatch, lambda: load_path(warehouse, SYNTHEA, fmt="synthea").as_dict()
    )
    assert chosen == rows
    assert "columnar" in paths.values()
    chosen, rows, paths = _load_both(
        warehouse,
        monkeypatch,
        lambda: load_path(warehouse, MAPPED, mapping_file=EXAMPLE_MAPPING, location=None).as_dict(),
    )
    assert chosen == rows
    assert "columnar" in paths.values()


def test_copy_text_escapes_what_the_copy_text_format_needs() -> None:
    import pyarrow as pa

    table = pa.table({"a": pa.array(['x"y', "t\tab", "n\nl", "c\rr", "b\\s", None, "plain"])})
    assert columnar.copy_text(table) == b"x\\x22y\nt\\tab\nn\\nl\nc\\rr\nb\\\\s\n\nplain\n"
    assert columnar.copy_text(pa.table({"a": pa.array(["plain", None])})) == b"plain\n\n"


def test_arrow_phone_and_email_rules_give_what_the_python_ones_give() -> None:
    import pyarrow as pa

    from reactivation.ingest import normalise, normalise_arrow

    rng = random.Random(5)
    phones = ["", "123", "+44 20 7946 0958", "(402)680-2498", "402-680-249", "1-402-680-2498", "٤٠٢٦٨٠٢٤٩٨"]
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(10))
        a, b, c = digits[:3], digits[3:6], digits[6:]
        phones.append(
            rng.choice([f"{a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}", digits, f"+1 {a} {b} {c}", f"+1{digits}"])
        )
    emails = ["", "Ann@Example.COM", "bad@", "a..b@x.com", " x@y.org", "é@Ünï.de", "A@B@C.com", "x@-y.com"]
    for _ in range(2000):
        local = "".join(rng.choice("abcXYZ.+_-'09") for _ in range(rng.randint(1, 8)))
        domain = "".join(rng.choice("abcDEF-09.") for _ in range(rng.randint(1, 12)))
        emails.append(f"{local}@{domain}")

    def flag(valid: bool | None) -> str | None:
        return None if valid is None else str(valid).lower()

    got = normalise_arrow.phones(pa.array(phones), "US")
    want = [normalise.normalise_phone(v, "US") for v in phones]
    assert list(zip(got[0].to_pylist(), got[1].to_pylist(), strict=True)) == [(e, flag(ok)) for e, ok in want]
    got = normalise_arrow.emails(pa.array(emails))
    want = [normalise.normalise_email(v) for v in emails]
    assert list(zip(got[0].to_pylist(), got[1].to_pylist(), strict=True)) == [(e, flag(ok)) for e, ok in want]
