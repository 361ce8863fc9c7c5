"""DAG integrity: every DAG file imports cleanly, follows the house policy, and is cheap to parse.

Import-time budget: a DAG file may take at most ``IMPORT_BUDGET_SECONDS`` to import
*beyond* ``airflow.sdk`` itself (the scheduler re-parses files every 30 s by default;
our files are wiring only). It may not import heavy libraries or the pipeline's
modules at top level: those load inside tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
IMPORT_BUDGET_SECONDS = 0.5
HUMAN_IN_THE_LOOP = {"ApprovalOperator", "HITLOperator"}
HEAVY_MODULES = ("pandas", "dbt", "great_expectations", "psycopg", "sendgrid", "twilio", "numpy", "reactivation")


def _airflow_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
            "PYTHONPATH": str(ROOT / "plugins"),
        }
    )
    return env


@pytest.fixture(scope="module")
def dag_report(tmp_path_factory) -> dict:
    """Load the DagBag in a clean interpreter (Airflow reads its config at import) and describe every DAG."""
    tmp_path = tmp_path_factory.mktemp("dagbag")
    script = f"""
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(ROOT / "dags")!r})
report = {{"import_errors": {{k: str(v)[:500] for k, v in bag.import_errors.items()}}, "dags": {{}}}}
for dag_id, dag in bag.dags.items():
    report["dags"][dag_id] = {{
        "fileloc": dag.fileloc,
        "catchup": dag.catchup,
        "tags": sorted(dag.tags or []),
        "doc_md": bool(dag.doc_md and dag.doc_md.strip()),
        "retries": {{t.task_id: t.retries for t in dag.tasks}},
        "operators": {{t.task_id: type(t).__name__ for t in dag.tasks}},
        "schedule": type(dag.timetable).__name__,
    }}
print("REPORT" + json.dumps(report))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=_airflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("REPORT") :])


def test_there_are_dag_files() -> None:
    assert DAG_FILES, "no DAG files in dags/"


def test_every_dag_file_imports_without_errors(dag_report: dict) -> None:
    assert dag_report["import_errors"] == {}
    loaded_files = {Path(d["fileloc"]).name for d in dag_report["dags"].values()}
    assert loaded_files == {f.name for f in DAG_FILES}, "every file in dags/ defines a DAG"


def test_dag_policy(dag_report: dict) -> None:
    assert dag_report["dags"], "no DAGs loaded"
    for dag_id, dag in dag_report["dags"].items():
        assert dag["catchup"] is False, f"{dag_id}: catchup must be False"
        assert dag["tags"], f"{dag_id}: needs tags"
        assert dag["doc_md"], f"{dag_id}: needs doc_md"
        assert dag["retries"], f"{dag_id}: has no tasks"
        for task_id, retries in dag["retries"].items():
            if dag["operators"][task_id] in HUMAN_IN_THE_LOOP:
                continue  # a person's decision is not retried
            assert retries >= 1, f"{dag_id}.{task_id}: needs retries"


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_import_is_cheap_and_light(dag_file: Path, tmp_path: Path) -> None:
    script = f"""
import importlib.util, json, sys, time
import airflow.sdk  # the framework's own cost is not the DAG file's
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", {str(dag_file)!r})
module = importlib.util.module_from_spec(spec)
start = time.perf_counter()
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
new = sorted(set(sys.modules) - before)
print("RESULT" + json.dumps({{"seconds": elapsed, "new_modules": new}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], env=_airflow_env(tmp_path), capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT") :])
    heavy = [m for m in result["new_modules"] if m.split(".")[0] in HEAVY_MODULES]
    assert not heavy, f"{dag_file.name} imports at top level: {heavy[:10]}"
    assert result["seconds"] < IMPORT_BUDGET_SECONDS, f"{dag_file.name} took {result['seconds']:.2f} s to import"
