"""Set-up shared by the tests that drive real nightly and events DAG runs: an isolated state folder,
a generated extract, a practice's time zone, and the sources file the ingest stage reads."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def isolated_state(prefix: str) -> tuple[Path, pytest.MonkeyPatch]:
    """A scratch folder under .state/tmp and an environment with no Airflow, warehouse or product
    variable but REACTIVATION_STATE_DIR pointing inside it; undo the patch when done."""
    from reactivation.settings import get_settings

    tmp = ROOT / ".state" / "tmp" / f"{prefix}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    patch = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith(("AIRFLOW", "WAREHOUSE_URL", "REACTIVATION_")):
            patch.delenv(name)
    patch.setenv("REACTIVATION_STATE_DIR", str(tmp / "state"))
    get_settings.cache_clear()
    return tmp, patch


def release_state(tmp: Path, patch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Undo ``isolated_state``; keep the folder (run logs, Airflow's, the warehouse's) when a test failed."""
    import shutil

    from reactivation.settings import get_settings

    patch.undo()
    get_settings.cache_clear()
    if request.session.testsfailed:
        print(f"kept for inspection: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def generate(out: Path, *, patients: int, locations: int, seed: int, as_of: date) -> None:
    """`reactivation generate` as an operator runs it."""
    made = subprocess.run(
        [str(BIN / "reactivation"), "generate", "--patients", str(patients), "--locations", str(locations),
         "--seed", str(seed), "--as-of", as_of.isoformat(), str(out)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]


def set_timezone(location_folder: Path, zone: str) -> None:
    """Give a generated location's practice another time zone (its locations.csv)."""
    path = location_folder / "locations.csv"
    lines = path.read_text().splitlines()
    header, row = lines[0].split(","), lines[1].split(",")
    row[header.index("timezone")] = zone
    path.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")


def write_sources(path: Path, folders: dict[str, Path], fmt: str = "csv") -> Path:
    """A sources file naming each location's extract folder."""
    path.write_text(
        "sources:\n"
        + "".join(
            f"  - name: {loc}\n    format: {fmt}\n    path: {folder}\n    location: {loc}\n"
            for loc, folder in folders.items()
        )
    )
    return path
