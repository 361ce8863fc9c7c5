"""Static checks run by `make test`: ruff (lint and format) and sqlfluff on the dbt project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PY_PATHS = ["dags", "plugins", "tests", "bench"]


def _existing(paths: list[str]) -> list[str]:
    return [p for p in paths if (ROOT / p).exists()]


def test_ruff_check() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", *_existing(PY_PATHS)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "format", "--check", *_existing(PY_PATHS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_sqlfluff_dbt_project(warehouse: str) -> None:
    """sqlfluff with the dbt templater compiles against a real (empty) warehouse database."""
    from reactivation.transform import DBT_PROJECT_DIR, dbt_env

    folders = [p for p in ("models", "data-tests", "analyses") if (DBT_PROJECT_DIR / p).is_dir()]
    result = subprocess.run(
        [str(BIN / "sqlfluff"), "lint", *folders, "--nocolor"],
        cwd=DBT_PROJECT_DIR,
        env=dbt_env(warehouse),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
