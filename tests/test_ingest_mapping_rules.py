"""Mapping rules that are easy to get wrong: strict keys, quoted value maps, case, formats, BOMs."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml

from reactivation.ingest.mapping import MappingError, parse_mapping
from reactivation.ingest.normalise import parse_timestamp, timezone_for_state
from reactivation.ingest.pipeline import load_path


def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.yml"
    path.write_text(text)
    return path


def test_misspelt_keys_are_errors() -> None:
    with pytest.raises(MappingError, match="delimeter"):
        parse_mapping({"name": "x", "files": [{"pattern": "*.csv", "entity": "patients", "delimeter": ";"}]}, "m.yml")
    with pytest.raises(MappingError, match="locaton"):
        parse_mapping({"name": "x", "locaton": "a", "files": []}, "m.yml")


def test_unquoted_value_map_keys_are_errors() -> None:
    data = yaml.safe_load(
        "name: x\nfiles:\n  - {pattern: p.csv, entity: patients, columns: {sex: {from: G, values: {01: F}}}}"
    )
    with pytest.raises(MappingError, match="quote it"):
        parse_mapping(data, "m.yml")


def test_state_names_and_codes_give_zones() -> None:
    assert timezone_for_state("NE") == "America/Chicago"
    assert timezone_for_state("Nebraska") == "America/Chicago"
    assert timezone_for_state("New  York") == "America/New_York"
    assert timezone_for_state("Texas") == "America/Chicago"
    assert timezone_for_state("Atlantis") is None


def test_date_only_timestamps_use_the_mappings_date_formats() -> None:
    assert parse_timestamp("31.10.2023", date_formats=("%d.%m.%Y",)) == "2023-10-31T00:00:00"
    with pytest.raises(ValueError):
        parse_timestamp("31.10.2023")


def test_drop_is_case_insensitive_bom_is_stripped_and_missing_columns_warn(warehouse: str, tmp_path: Path) -> None:
    mapping = _mapping(
        tmp_path,
        """
name: pm
location: main
encoding: utf-8
files:
  - pattern: pats.csv
    entity: patients
    drop: [ssn]
    columns:
      patient_id: PatNum
      first_name: FName
      last_name: LName
      birth_date: DOB
      phone: CellPhone
""",
    )
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "pats.csv").write_bytes(
        "\ufeffPatNum,FName,LName,DOB,SSN,Chart\n1,A,B,1990-01-01,000-00-0000,7\n".encode()
    )
    summary = load_path(warehouse, folder, mapping_file=mapping)
    result = summary.files[0]
    assert result.status == "loaded", result.message
    assert "column CellPhone (for phone) is not in the file; left empty" in result.warnings
    with psycopg.connect(warehouse) as conn:
        assert conn.execute("select patient_id, extra from raw.patients").fetchone() == ("1", {"Chart": "7"})
