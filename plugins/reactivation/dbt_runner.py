"""dbt's command line, starting ready nodes longest-remaining-chain first.

dbt starts the ready node of the lowest graph depth first (ties by name). A node on the build's
longest chain sits deep in the graph by nature, so whenever every thread is busy it waits behind
shallow side branches: on the 2-core box the nightly build's longest chain waited about 24 s for a
thread that way (bench/README.md). Here a ready node's priority is the work still ahead of it: its
own duration plus the longest chain of its descendants', from the durations recorded by earlier
builds (a node never timed counts one second). dbt has no setting for this (dbt-core#10632), so the
runner replaces ``GraphQueue._get_scores``, the one place dbt scores nodes; should a dbt release
move it, dbt runs in its own order and the runner says so. Which nodes run, and what each one
does, is unchanged.

    python -m reactivation.dbt_runner <dbt arguments>

``REACTIVATION_DBT_TIMINGS`` names the file of recorded durations (JSON, node id -> seconds); after
each command the durations in its run_results.json are folded in.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path

import networkx as nx

TIMINGS_ENV = "REACTIVATION_DBT_TIMINGS"
UNTIMED_SECONDS = 1.0
# A new measurement counts half: one slow night (a busy box) does not reorder the next one alone.
SMOOTHING = 0.5


def remaining_work(graph: nx.DiGraph, seconds: Mapping[str, float]) -> dict[str, float]:
    """Per node: its own seconds plus the longest chain of seconds among its descendants."""
    remaining: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        ahead = max((remaining[child] for child in graph.successors(node)), default=0.0)
        remaining[node] = seconds.get(node, UNTIMED_SECONDS) + ahead
    return remaining


def longest_chain_first(graph: nx.DiGraph, seconds: Mapping[str, float]) -> dict[str, float]:
    """Scores for dbt's priority queue (lowest runs first): the most work ahead, the lowest score."""
    return {node: -work for node, work in remaining_work(graph, seconds).items()}


def read_timings(path: Path | None) -> dict[str, float]:
    if path is None or not path.exists():
        return {}
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # a damaged file only costs tonight's order, never the build
    return {node: float(value) for node, value in recorded.items() if isinstance(value, int | float)}


def fold_in(timings: dict[str, float], run_results: Path) -> dict[str, float]:
    """The durations of the nodes a command ran, folded into the recorded ones."""
    try:
        results = json.loads(run_results.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return timings
    folded = dict(timings)
    for item in results:
        node, took = item.get("unique_id"), item.get("execution_time")
        if not node or not isinstance(took, int | float) or item.get("status") in {"skipped", "error"}:
            continue
        folded[node] = round(SMOOTHING * took + (1 - SMOOTHING) * folded[node], 3) if node in folded else took
    return folded


def _target_path(args: list[str]) -> Path | None:
    for flag, value in pairwise(args):
        if flag == "--target-path":
            return Path(value)
    return None


def _order_by_longest_chain(seconds: Mapping[str, float]) -> bool:
    from dbt.graph.queue import GraphQueue

    if not callable(getattr(GraphQueue, "_get_scores", None)):
        return False
    GraphQueue._get_scores = lambda self, graph: longest_chain_first(graph, seconds)
    return True


def main(args: list[str]) -> int:
    timings_file = Path(os.environ[TIMINGS_ENV]) if os.environ.get(TIMINGS_ENV) else None
    timings = read_timings(timings_file)
    if not _order_by_longest_chain(timings):
        print("reactivation: this dbt has no GraphQueue._get_scores; nodes run in dbt's own order", file=sys.stderr)
    from dbt.cli.main import cli

    code = 0
    try:
        cli.main(args=args, prog_name="dbt")  # standalone, as the `dbt` command: dbt's own exit codes
    except SystemExit as stopped:
        code = stopped.code if isinstance(stopped.code, int) else int(stopped.code is not None)
    finally:
        target = _target_path(args)
        if timings_file is not None and target is not None and (target / "run_results.json").exists():
            timings_file.parent.mkdir(parents=True, exist_ok=True)
            partial = timings_file.with_suffix(".tmp")
            partial.write_text(json.dumps(fold_in(timings, target / "run_results.json"), sort_keys=True))
            partial.replace(timings_file)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
