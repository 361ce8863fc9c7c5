"""dbt's unit tests (every care-gap rule's logic on fixed inputs) run here, not in the nightly build."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import pytest

from reactivation.quality.store import ensure_quality_schema
from reactivation.settings import get_settings
from reactivation.transform import DBT_PROJECT_DIR, run_dbt, run_dbt_build, run_unit_tests
from reactivation.warehouse import ensure_schema

AS_OF = date(2026, 11, 1)


def _unit_test_results(target: Path) -> dict[str, str]:
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {item["unique_id"]: item["status"] for item in results if item["unique_id"].startswith("unit_test.")}


def test_unit_tests_pass_and_cover_every_rule_but_stay_out_of_the_nightly_build(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    target = tmp_path / "state" / "dbt" / "target"
    # A new warehouse: empty raw and ops tables, the seeds, and every model built from them, so empty
    # (unit tests read their inputs' columns from the warehouse, never their rows).
    ensure_schema(warehouse)
    ensure_quality_schema(warehouse)
    for args in (["seed"], ["run"]):
        process, _ = run_dbt(warehouse, args, as_of=AS_OF)
        assert process.returncode == 0, process.stdout[-3000:]

    result = run_unit_tests(warehouse, as_of=AS_OF)
    assert result["success"], result["failures"]
    manifest = json.loads((target / "manifest.json").read_text())
    declared = set(manifest["unit_tests"])
    assert len(declared) >= 30
    assert _unit_test_results(target) == dict.fromkeys(declared, "pass")

    # One unit test per rule of the default catalog, named after it.
    with (DBT_PROJECT_DIR / "seeds" / "rules" / "care_gap_rules.csv").open() as seed:
        rule_ids = {row["rule_id"] for row in csv.DictReader(seed)}
    assert len(rule_ids) == 14
    assert {f"unit_test.reactivation.int_care_gap_evaluations.care_gaps_{rule_id}" for rule_id in rule_ids} <= declared

    # The nightly build leaves them out; asked to, a build runs each before its model.
    nightly = run_dbt_build(warehouse, as_of=AS_OF, select="int_care_gap_evaluations")
    assert nightly["success"], nightly["failures"]
    assert _unit_test_results(target) == {}
    with_unit_tests = run_dbt_build(warehouse, as_of=AS_OF, select="int_care_gap_evaluations", unit_tests=True)
    assert with_unit_tests["success"], with_unit_tests["failures"]
    care_gaps_tests = {name for name in declared if name.startswith("unit_test.reactivation.int_care_gap_evaluations.")}
    assert _unit_test_results(target) == dict.fromkeys(care_gaps_tests, "pass")
