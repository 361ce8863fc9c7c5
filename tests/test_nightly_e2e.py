"""The nightly run end to end, as `make run` does it, twice in a row, with no PHI in any output.

It starts from nothing: a fresh state folder, no WAREHOUSE_URL (so the embedded
warehouse is initialised, used and stopped), a fresh Airflow home, and runs
`reactivation run` (which runs `airflow dags test`) on the Synthea sample plus a
generated native-CSV extract that has phones and emails. Then it searches
everything printed and every log written for the patients' names, phones,
emails, addresses and birth dates.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea_csv_nebraska"
AS_OF = "2023-10-31"
pytestmark = pytest.mark.e2e


def _run(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    # A hard kill on timeout: a stuck Airflow run must not eat CI's time.
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def nightly() -> Iterator[dict]:
    # Under .state/ rather than pytest's tmp: the embedded server's own user must reach it (see conftest).
    tmp = ROOT / ".state" / "tmp" / f"nightly-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WAREHOUSE_URL", "REACTIVATION_"))}
    env["REACTIVATION_STATE_DIR"] = str(tmp / "state")
    generated = tmp / "generated"
    gen = _run([str(BIN / "reactivation"), "generate", "--patients", "300", "--locations", "2", "--seed", "11",
                "--as-of", AS_OF, str(generated)], env)  # fmt: skip
    assert gen.returncode == 0, gen.stderr[-2000:]
    locations = sorted(p.name for p in generated.iterdir() if p.is_dir() and (p / "patients.csv").exists())
    sources = tmp / "sources.yml"
    lines = ["sources:", "  - name: sample", "    format: synthea", f"    path: {SYNTHEA}", "    location: nebraska"]
    for loc in locations:
        lines += [f"  - name: {loc}", "    format: csv", f"    path: {generated / loc}", f"    location: {loc}"]
    sources.write_text("\n".join(lines) + "\n")
    env["REACTIVATION_SOURCES"] = str(sources)
    first = _run([str(BIN / "reactivation"), "run", "--as-of", AS_OF], env)
    second = _run([str(BIN / "reactivation"), "run", "--as-of", AS_OF], env)
    yield {"tmp": tmp, "env": env, "first": first, "second": second, "generated": generated, "locations": locations}
    shutil.rmtree(tmp, ignore_errors=True)


def test_first_run_completes_every_stage(nightly) -> None:
    first = nightly["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for stage in ("ingest", "transform"):
        assert re.search(rf"{stage}\s*│\s*success", first.stdout), f"{stage} did not report success"
    assert "Airflow run succeeded" in first.stdout


def test_second_run_is_a_no_op_load_and_still_succeeds(nightly) -> None:
    second = nightly["second"]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    text = " ".join(second.stdout.split())
    assert "0 loaded," in text, "files already loaded must be skipped on the second run"


def test_embedded_warehouse_kept_data_and_stopped_cleanly(nightly) -> None:
    state = nightly["tmp"] / "state" / "warehouse"
    assert (state / "pgdata" / "PG_VERSION").exists()
    assert not (state / "pgdata" / "postmaster.pid").exists(), "the embedded warehouse must be stopped after the run"
    from reactivation.embedded_warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(state)
    url = server.start()
    try:
        with psycopg.connect(url) as conn:
            manifest = conn.execute(
                "select status, count(*), sum(rows_read), sum(rows_loaded + rows_quarantined) "
                "from raw.load_manifest group by status"
            ).fetchall()
            stages = conn.execute("select stage, count(*) from ops.stage_results group by stage").fetchall()
            patients = conn.execute("select count(*) from staging.stg_emr__patients").fetchone()[0]
            plans = conn.execute(
                "select summary from ops.stage_results where stage = 'plan' order by recorded_at"
            ).fetchall()
            accepted = dict(
                conn.execute("select channel, count(*) from ops.outbox where state = 'accepted' group by 1").fetchall()
            )
            delivered = conn.execute("select count(*) from ops.message_status where status = 'delivered'").fetchone()[0]
    finally:
        server.stop()
    by_status = {row[0]: row for row in manifest}
    assert set(by_status) == {"loaded"}, "nothing rejected, nothing loaded twice"
    assert by_status["loaded"][2] == by_status["loaded"][3], "rows read = loaded + quarantined"
    assert {stage: n for stage, n in stages if stage != "report"} == {
        "ingest": 2,
        "transform": 2,
        "quality_gate": 2,
        "plan": 2,
        "send": 2,
    }
    first_plan, second_plan = plans[0][0], plans[1][0]
    assert first_plan["touches_planned"] > 0 and not first_plan["already_planned"]
    assert second_plan["already_planned"], "the second run of the same night plans nothing new"
    assert accepted.get("sms", 0) > 0 and accepted.get("email", 0) > 0, "messages went through the sandbox"
    assert delivered > 0, "signed delivery events came back through the webhook receiver"
    synthea_patients = len((SYNTHEA / "patients.csv").read_text().splitlines()) - 1
    assert patients >= synthea_patients + 300


def _needles(nightly) -> set[str]:
    """Identifying values of every patient in both extracts."""
    excluded_dates = {AS_OF}  # a birth date equal to the run's own as-of date would match for a legitimate reason
    needles: set[str] = set()
    with open(SYNTHEA / "patients.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            needles.update({row["FIRST"], row["LAST"], f"{row['FIRST']} {row['LAST']}", row["ADDRESS"]})
            if row["BIRTHDATE"] not in excluded_dates:
                needles.add(row["BIRTHDATE"])
    for loc in nightly["locations"]:
        with open(nightly["generated"] / loc / "patients.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                needles.add(f"{row['first_name']} {row['last_name']}")
                if len(row["last_name"]) >= 6:
                    needles.add(row["last_name"])
                for key in ("phone", "email", "address_line"):
                    if len(row[key]) >= 6:
                        needles.add(row[key])
                digits = "".join(ch for ch in row["phone"] if ch.isdigit())
                if len(digits) >= 10:
                    needles.add(digits[-10:])
                if row["birth_date"] and row["birth_date"] not in excluded_dates:
                    needles.add(row["birth_date"])
    return {n for n in needles if n and len(n) >= 6}


def test_no_phi_in_output_or_logs(nightly) -> None:
    haystacks: dict[str, str] = {}
    for name in ("first", "second"):
        haystacks[f"{name} run stdout"] = nightly[name].stdout
        haystacks[f"{name} run stderr"] = nightly[name].stderr
    state = nightly["tmp"] / "state"
    log_files = [p for p in state.rglob("*") if p.is_file() and p.suffix in {".log", ".json", ".txt", ""}]
    log_files = [p for p in log_files if "pgdata" not in p.parts and "target" not in p.parts]
    assert any("airflow" in p.parts for p in log_files), "Airflow task logs are part of the search"
    for path in log_files:
        haystacks[str(path.relative_to(state))] = path.read_text(errors="replace")
    needles = _needles(nightly)
    assert len(needles) > 500
    found = sorted({(where, needle) for where, text in haystacks.items() for needle in needles if needle in text})
    # Report only where and how many, never the values themselves.
    assert not found, f"{len(found)} patient value(s) found in: {sorted({where for where, _ in found})}"
