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
