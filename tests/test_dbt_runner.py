"""The dbt runner: ready nodes start longest-remaining-chain first, from the durations of earlier builds."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import networkx as nx
import pytest

from reactivation.dbt_runner import fold_in, longest_chain_first, read_timings
from reactivation.settings import get_settings
from reactivation.transform import run_dbt


def test_a_deep_node_on_the_long_chain_goes_before_a_shallow_side_branch() -> None:
    # staging -> identity -> care_gaps -> outreach is the long chain; staging -> report a short branch.
    graph = nx.DiGraph(
        [("staging", "identity"), ("identity", "care_gaps"), ("care_gaps", "outreach"), ("staging", "report")]
    )
    graph.add_edge("seed", "side")
    seconds = {"staging": 5, "identity": 10, "care_gaps": 20, "outreach": 5, "report": 30, "seed": 1, "side": 2}
    scores = longest_chain_first(graph, seconds)
    # dbt's own order would start "report" (depth 1) before "care_gaps" (depth 2) and "side" before both.
    assert scores["care_gaps"] == -25 and scores["report"] == -30 and scores["identity"] == -35
    assert scores["identity"] < scores["report"] < scores["care_gaps"] < scores["side"]
    assert scores["staging"] == -40
    # A node never timed counts one second.
    assert longest_chain_first(graph, {})["staging"] == -4


def test_durations_are_folded_in_half_and_half_and_damage_is_ignored(tmp_path: Path) -> None:
    results = tmp_path / "run_results.json"
    results.write_text(
        json.dumps(
            {
                "results": [
                    {"unique_id": "model.a", "status": "success", "execution_time": 10.0},
                    {"unique_id": "model.b", "status": "success", "execution_time": 4.0},
                    {"unique_id": "model.c", "status": "skipped", "execution_time": 0.0},
                    {"unique_id": "test.d", "status": "fail", "execution_time": 2.0},
                ]
            }
        )
    )
    assert fold_in({"model.a": 20.0, "model.c": 3.0}, results) == {
        "model.a": 15.0,
        "model.b": 4.0,
        "model.c": 3.0,
        "test.d": 2.0,
    }
    assert fold_in({"model.a": 1.0}, tmp_path / "missing.json") == {"model.a": 1.0}
    damaged = tmp_path / "node_timings.json"
    damaged.write_text("{not json")
    assert read_timings(damaged) == {}
    assert read_timings(None) == {}


def test_dbt_runs_the_node_with_the_most_work_ahead_first(
    warehouse: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On one thread the run order is the priority order: the seed recorded as slowest loads first,
    where dbt alone would load the seeds by name (care_gap_closing_intervals first)."""
    state = tmp_path / "state"
    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(state))
    monkeypatch.setenv("REACTIVATION_DBT_THREADS", "1")
    get_settings.cache_clear()
    timings = state / "dbt" / "node_timings.json"
    timings.parent.mkdir(parents=True)
    timings.write_text(json.dumps({"seed.reactivation.value_sets": 100.0, "seed.reactivation.contact_policy": 50.0}))

    process, target = run_dbt(warehouse, ["seed"], as_of=date(2026, 11, 1))
    assert process.returncode == 0, process.stdout[-2000:]
    assert "dbt's own order" not in process.stdout

    results = json.loads((target / "run_results.json").read_text())["results"]
    started = sorted(
        (datetime.fromisoformat(item["timing"][-1]["started_at"].replace("Z", "+00:00")), item["unique_id"])
        for item in results
    )
    order = [node for _, node in started]
    assert order[:2] == ["seed.reactivation.value_sets", "seed.reactivation.contact_policy"]
    assert len(order) >= 8
    # What this command measured replaced the made-up durations, half and half.
    recorded = json.loads(timings.read_text())
    assert set(order) <= set(recorded)
    assert recorded["seed.reactivation.value_sets"] < 100.0
