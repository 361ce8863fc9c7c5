"""The operator's entry point: console script and ``python -m``, clear errors on bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_console_script_and_module_agree() -> None:
    script = _run(str(BIN / "reactivation"), "--version")
    module = _run(sys.executable, "-m", "reactivation", "--version")
    assert script.returncode == 0 and module.returncode == 0
    assert script.stdout.strip() == module.stdout.strip()
    assert script.stdout.startswith("reactivation ")


def test_help_lists_the_commands() -> None:
    result = _run(str(BIN / "reactivation"), "--help")
    for command in ("run", "load", "transform", "generate", "warehouse"):
        assert command in result.stdout


def test_bad_date_is_a_usage_error() -> None:
    result = _run(str(BIN / "reactivation"), "run", "--as-of", "31/10/2023")
    assert result.returncode == 2
    assert "not a date" in result.stderr and "Traceback" not in result.stderr


def test_missing_path_is_one_clear_line(tmp_path) -> None:
    result = _run(str(BIN / "reactivation"), "load", "--format", "csv", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_load_needs_a_format_or_mapping(tmp_path) -> None:
    result = _run(str(BIN / "reactivation"), "load", str(tmp_path))
    assert result.returncode == 2
    assert "--format" in result.stderr


def test_transform_full_refresh_rebuilds_incremental_staging(warehouse: str, state_tmp: Path) -> None:
    """Incremental staging reads only new loads; --full-refresh re-reads the raw layer (a changed model)."""
    import os

    import psycopg

    env = {**os.environ, "WAREHOUSE_URL": warehouse, "REACTIVATION_STATE_DIR": str(state_tmp / "state")}
    env["DBT_INDIRECT_SELECTION"] = "cautious"  # staging only: no test that also reads the identity marts

    def reactivation(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "reactivation"), *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
        )

    extract = state_tmp / "extract"
    as_of = "2026-11-01"
    assert reactivation("generate", "--patients", "200", "--locations", "1", "--seed", "3", "--as-of", as_of,
                        str(extract)).returncode == 0  # fmt: skip
    assert reactivation("load", "--format", "csv", "--location", "loc_01", str(extract / "loc_01")).returncode == 0
    staging = ["transform", "--as-of", as_of, "--select", "path:models/staging/emr"]
    first = reactivation(*staging)
    assert first.returncode == 0, first.stdout[-3000:]

    def staged_surnames() -> set[str]:
        with psycopg.connect(warehouse) as conn:
            return {row[0] for row in conn.execute("select distinct last_name from staging.stg_emr__patients")}

    with psycopg.connect(warehouse) as conn:  # stands in for a staging model whose output changed
        conn.execute("update raw.patients set last_name = 'Refreshed'")
    assert reactivation(*staging).returncode == 0
    assert "Refreshed" not in staged_surnames(), "an incremental build takes only new loads"
    assert reactivation(*staging, "--full-refresh").returncode == 0
    assert staged_surnames() == {"Refreshed"}
