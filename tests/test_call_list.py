"""Staff calls: a call list per location (table and CSV) whose outcomes are read back into episodes."""

from __future__ import annotations

import csv
import dataclasses
from datetime import UTC, date, datetime

import psycopg
import pytest
from outreach_fixtures import Person, build_warehouse

from reactivation.outreach.config import load_config, parse_config
from reactivation.outreach.delivery import send_one_batch
from reactivation.outreach.planning import plan_outreach
from reactivation.outreach.providers.call_list import CallOutcomeError, export_call_lists, import_outcomes

AS_OF = date(2026, 11, 2)
MIDDAY = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)  # inside the calling window wherever the practice is


def _plan_calls(url: str) -> None:
    config = parse_config({"cadences": {"c": {"touches": [{"day": 0, "channel": "call"}]}}})
    config = dataclasses.replace(config, approval_policies=load_config().approval_policies)
    plan_outreach(url, as_of=AS_OF, dag_run_id="r", config=config)


def test_call_list_export_and_outcomes_read_back(warehouse: str, tmp_path) -> None:
    build_warehouse(
        warehouse,
        [Person(f"c{i}", household_id=f"h{i}", channels="call", location_id=loc) for i, loc in
         enumerate(["loc_a", "loc_a", "loc_b"])],
    )  # fmt: skip
    with psycopg.connect(warehouse) as conn:
        conn.execute(
            "insert into staging.stg_emr__patients select patient_key, %s, %s, current_date from marts.person_sources",
            ("Fn", "Ln"),
        )
    _plan_calls(warehouse)
    for batch_id in ("2026-11-02:loc_a:call", "2026-11-02:loc_b:call"):
        assert send_one_batch(warehouse, batch_id, clock=lambda: MIDDAY)["accepted"] >= 1
    files = export_call_lists(warehouse, AS_OF, tmp_path)
    assert sorted(files) == ["loc_a", "loc_b"]
    path = files["loc_a"]
    assert path.stat().st_mode & 0o077 == 0, "the list names patients: owner-only"
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 and rows[0]["reason"] == "It has been a while since your last visit"
    rows[0]["outcome"], rows[1]["outcome"] = "Booked", "voicemail"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert import_outcomes(warehouse, path) == {"updated": 2, "blank": 0, "booked": 1, "voicemail": 1}
    with psycopg.connect(warehouse) as conn:
        episodes = conn.execute(
            "select e.status, e.end_reason from ops.episodes e join ops.outbox o using (episode_id) "
            "where o.outreach_key = any(%s) order by o.outreach_key = %s desc",
            ([r["outreach_key"] for r in rows], rows[0]["outreach_key"]),
        ).fetchall()
    assert episodes == [("ended", "booked"), ("active", None)], "booked ends the episode; voicemail does not"


def test_unknown_outcome_is_a_clear_error(warehouse: str, tmp_path) -> None:
    path = tmp_path / "calls.csv"
    path.write_text("outreach_key,outcome\nabc,maybe\n")
    build_warehouse(warehouse, [])
    with pytest.raises(CallOutcomeError, match="line 2: unknown outcome"):
        import_outcomes(warehouse, path)
