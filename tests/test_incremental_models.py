"""Incremental models, night after night.

- Their data tests read what a night wrote (macros/tests/rows_this_run_wrote.sql): the rows it
  wrote, and for a uniqueness test every row sharing a value with them, so a row written tonight
  that collides with an earlier night's row still fails the build. A row no night rewrote is not
  read again; ``reactivation transform --test-every-row`` reads it.
- The clinical events, and the events coded to the catalog's value sets, follow a re-delivered
  encounter that moved to another patient record.
- The coded events and the closing events follow a record that identity matching puts under
  another person, and the person facts a record that leaves its person.
- The households follow a person who moves out and a newcomer who shares a household's phone.
- A closing event dated after the as-of date comes into view on the night the as-of date reaches
  it, with no new load, and the new date costs dbt no whole-project parse.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AS_OF = "2026-11-01"
NEXT_DAY = "2026-11-02"
DAY_AFTER = "2026-11-03"
SELECTION = "+int_clinical_events_unioned"
CODED_SELECTION = "+int_care_gap_closing_events"
PEOPLE_SELECTION = "+int_care_gap_closing_events +int_person_facts"
HOUSEHOLD_SELECTION = "+int_households"


def _failed_tests(result: subprocess.CompletedProcess) -> set[str]:
    """The names of the data tests that failed, from the transform's JSON summary."""
    import json

    summary = json.loads(result.stdout[result.stdout.index("{") :])
    return {failure["node"].split(".")[2] for failure in summary["failures"]}


def _command(warehouse: str, state_tmp: Path):
    env = {**os.environ, "WAREHOUSE_URL": warehouse, "REACTIVATION_STATE_DIR": str(state_tmp / "state")}
    env["DBT_INDIRECT_SELECTION"] = "cautious"  # no test that also reads models outside the selection

    def reactivation(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "reactivation"), *args], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env
        )

    return reactivation


def _first_night(reactivation, extract: Path, selection: str = SELECTION) -> None:
    """A generated extract of one location, loaded and built up to the clinical events (or ``selection``)."""
    generated = reactivation("generate", "--patients", "200", "--locations", "1", "--seed", "5", "--as-of", AS_OF,
                             str(extract))  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-2000:]
    loaded = reactivation(
        "load", "--format", "csv", "--location", "loc_01", "--extract-date", AS_OF, str(extract / "loc_01")
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    first = reactivation("transform", "--as-of", AS_OF, "--select", selection)
    assert first.returncode == 0, first.stdout[-3000:]


def _write_delta(folder: Path, entity: str, rows: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{entity}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _duplicate_id(conn: psycopg.Connection, patient_key: str, *, before: bool) -> str:
    """A new patient id at the record's location whose patient key (the hash staging computes) sorts
    before (or after) the record's: the person's id is the hash of the smallest key of their records."""
    return conn.execute(
        "select candidate from generate_series(1, 1000) as n,"
        " lateral (select 'dup-' || n as candidate) as named,"
        " lateral (select md5(patients.source_system || '|' || patients.source_location_id"
        " || '|' || named.candidate) as candidate_key"
        " from staging.stg_emr__patients as patients where patients.patient_key = %s) as keyed"
        f" where keyed.candidate_key {'<' if before else '>'} %s order by n limit 1",
        (patient_key, patient_key),
    ).fetchone()[0]


def _read(extract: Path, entity: str) -> list[dict]:
    with (extract / "loc_01" / f"{entity}.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_tests_read_the_rows_a_night_wrote_and_catch_collisions_with_earlier_rows(
    warehouse: str, state_tmp: Path
) -> None:
    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract)

    patients = _read(extract, "patients")
    with psycopg.connect(warehouse) as conn:
        keys = dict(conn.execute("select patient_id, patient_key from staging.stg_emr__patients").fetchall())
        with_events = {
            row[0] for row in conn.execute("select distinct patient_key from intermediate.int_clinical_events_unioned")
        }
        touched, bystander = [row for row in patients if keys.get(row["patient_id"]) in with_events][:2]
        # An earlier night's row that breaks a test: not read again by a night that does not rewrite it.
        broken = conn.execute(
            "update staging.stg_emr__procedures set code = null"
            " where procedure_key = (select min(procedure_key) from staging.stg_emr__procedures where patient_id = %s)"
            " returning procedure_key",
            (bystander["patient_id"],),
        ).fetchone()
        assert broken is not None
        # An earlier night's row of another record sharing an event id with one of the touched record's
        # events, which tonight's build rewrites: a collision the uniqueness test must still see.
        columns = [
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns"
                " where table_schema = 'intermediate' and table_name = 'int_clinical_events_unioned'"
                " and column_name <> 'patient_key' order by ordinal_position"
            )
        ]
        listed = ", ".join(columns)
        planted = conn.execute(
            f"insert into intermediate.int_clinical_events_unioned (patient_key, {listed})"
            f" select %s, {listed} from intermediate.int_clinical_events_unioned"
            " where patient_key = %s limit 1",
            (keys[bystander["patient_id"]], keys[touched["patient_id"]]),
        ).rowcount
        assert planted == 1

    # The next day's extract changes the touched patient's record only.
    delta = state_tmp / "delta" / "loc_01"
    _write_delta(delta, "patients", [dict(touched, language="es")])
    loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", NEXT_DAY, str(delta))
    assert loaded.returncode == 0, loaded.stderr[-2000:]

    night = reactivation("transform", "--as-of", NEXT_DAY, "--select", SELECTION)
    assert night.returncode == 1, night.stdout[-3000:]
    assert _failed_tests(night) == {"unique_int_clinical_events_unioned_event_id"}

    every_row = reactivation("transform", "--as-of", NEXT_DAY, "--select", SELECTION, "--test-every-row")
    assert every_row.returncode == 1, every_row.stdout[-3000:]
    # dbt then skips what reads the staged procedures, the events and their tests among them.
    assert _failed_tests(every_row) == {"not_null_stg_emr__procedures_code"}


def test_the_events_follow_an_encounter_that_moved_to_another_record(warehouse: str, state_tmp: Path) -> None:
    """An encounter is keyed without its patient, so a re-delivered one can name another record: the
    record it left must lose its visit event and its coded event, as a full rebuild has it (and not
    hold them twice). The person facts derive again the people the nights touched, not everyone: a
    location's visit counts grow with every visit, its practice type does not."""
    from reactivation.transform import mart_fingerprints

    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract, PEOPLE_SELECTION)

    # A visit that no procedure, observation or condition names, of a visit type a value set holds,
    # booked to one record on the next day and moved to another the day after: nothing else of the
    # first record changes with it, so only the move itself can tell that record to re-derive its events.
    with psycopg.connect(warehouse) as conn:
        coded_encounter_ids = {
            row[0]
            for row in conn.execute(
                "select encounters.encounter_id from intermediate.int_clinical_events_coded as coded"
                " inner join staging.stg_emr__encounters as encounters on coded.event_id = encounters.encounter_key"
            )
        }
    encounter = next(row for row in _read(extract, "encounters") if row["encounter_id"] in coded_encounter_ids)
    patient_ids = sorted({row["patient_id"] for row in _read(extract, "patients")})
    first, other = patient_ids[:2]
    visit = dict(encounter, encounter_id="moved-visit-1", patient_id=first, encounter_date=f"{NEXT_DAY}T09:00:00")
    for night, as_of, patient_id in (("booked", NEXT_DAY, first), ("moved", DAY_AFTER, other)):
        delta = state_tmp / night / "loc_01"
        _write_delta(delta, "encounters", [dict(visit, patient_id=patient_id)])
        loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", as_of, str(delta))
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        built = reactivation("transform", "--as-of", as_of, "--select", PEOPLE_SELECTION)
        assert built.returncode == 0, built.stdout[-3000:]
        with psycopg.connect(warehouse) as conn:
            for table in ("int_clinical_events_unioned", "int_clinical_events_coded"):
                holders = conn.execute(
                    f"select distinct patients.patient_id from intermediate.{table} as events"
                    " inner join staging.stg_emr__patients as patients on events.patient_key = patients.patient_key"
                    " inner join staging.stg_emr__encounters as encounters"
                    " on events.event_id = encounters.encounter_key"
                    " where encounters.encounter_id = 'moved-visit-1'"
                ).fetchall()
                assert holders == [(patient_id,)], (night, table)
            derived, people = conn.execute(
                "select count(*) filter (where built_at = (select max(built_at) from intermediate.int_person_facts)),"
                " count(*) from intermediate.int_person_facts"
            ).fetchone()
            assert 0 < derived < people / 2, (night, derived, people)

    tables = (
        "intermediate.int_clinical_events_unioned",
        "intermediate.int_clinical_events_coded",
        "intermediate.int_care_gap_closing_events",
        "intermediate.int_person_facts",
    )
    incremental = mart_fingerprints(warehouse, tables)
    rebuilt = reactivation("transform", "--as-of", DAY_AFTER, "--select", PEOPLE_SELECTION, "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert mart_fingerprints(warehouse, tables) == incremental


def test_the_coded_events_follow_a_record_matched_to_another_person(warehouse: str, state_tmp: Path) -> None:
    """A new record that duplicates an earlier one, with a patient key that sorts first, gives that
    person a new person_id (the hash of the smallest key of the person's records): the earlier record's
    coded events and closing events, which no new load touched, move to the new person_id."""
    from reactivation.transform import mart_fingerprints

    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract, CODED_SELECTION)

    with psycopg.connect(warehouse) as conn:
        # A record whose events are some person's closing evidence: its old person's closing events
        # must go with it.
        patient_id, patient_key, person_id = conn.execute(
            "select patients.patient_id, patients.patient_key, closing.person_id"
            " from intermediate.int_care_gap_closing_events as closing"
            " inner join staging.stg_emr__patients as patients on closing.evidence_patient_key = patients.patient_key"
            " order by patients.patient_key desc limit 1"
        ).fetchone()
        # The duplicate's id: the first whose key sorts before the record's.
        duplicate_id = _duplicate_id(conn, patient_key, before=True)
    record = next(row for row in _read(extract, "patients") if row["patient_id"] == patient_id)
    delta = state_tmp / "duplicate" / "loc_01"
    _write_delta(delta, "patients", [dict(record, patient_id=duplicate_id)])
    loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", NEXT_DAY, str(delta))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    built = reactivation("transform", "--as-of", NEXT_DAY, "--select", CODED_SELECTION)
    assert built.returncode == 0, built.stdout[-3000:]

    with psycopg.connect(warehouse) as conn:
        mapped = conn.execute(
            "select person_id from intermediate.int_patients_mapped where patient_key = %s", (patient_key,)
        ).fetchone()[0]
        coded_people = conn.execute(
            "select distinct person_id from intermediate.int_clinical_events_coded where patient_key = %s",
            (patient_key,),
        ).fetchall()
        old_person = conn.execute(
            "select (select count(*) from intermediate.int_patients_mapped where person_id = %s),"
            " (select count(*) from intermediate.int_care_gap_closing_events where person_id = %s)",
            (person_id, person_id),
        ).fetchone()
    assert mapped != person_id, "the duplicate did not join the person: nothing was remapped"
    assert coded_people == [(mapped,)]
    # The old person_id is gone, and with it the closing events the record gave it.
    assert old_person == (0, 0)

    # A night after the model's definition changed (its SQL or the value sets: the hash kept as the
    # table's comment differs) rebuilds it whole: a row the new definition would not write leaves.
    with psycopg.connect(warehouse) as conn:
        conn.execute("comment on table intermediate.int_clinical_events_coded is 'definition of an earlier release'")
        conn.execute(
            "insert into intermediate.int_clinical_events_coded"
            " select * from intermediate.int_clinical_events_coded where patient_key = %s limit 1",
            (patient_key,),
        )
        conn.execute("update intermediate.int_clinical_events_coded set value_set_id = 'retired' where ctid ="
                     " (select max(ctid) from intermediate.int_clinical_events_coded)")  # fmt: skip
    again = reactivation("transform", "--as-of", NEXT_DAY, "--select", CODED_SELECTION)
    assert again.returncode == 0, again.stdout[-3000:]
    with psycopg.connect(warehouse) as conn:
        retired = conn.execute(
            "select count(*) from intermediate.int_clinical_events_coded where value_set_id = 'retired'"
        ).fetchone()[0]
    assert retired == 0

    tables = ("intermediate.int_clinical_events_coded", "intermediate.int_care_gap_closing_events")
    incremental = mart_fingerprints(warehouse, tables)
    rebuilt = reactivation("transform", "--as-of", NEXT_DAY, "--select", CODED_SELECTION, "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert mart_fingerprints(warehouse, tables) == incremental


def test_the_person_facts_follow_a_record_that_leaves_its_person(warehouse: str, state_tmp: Path) -> None:
    """A duplicate record joins a person one night, bringing a procedure of a value set the person had
    not; the next night its details change and it leaves to become a person of its own. The person it
    left (whose id, profile and visits stay the same) must lose that value set, as a full rebuild has it:
    only the record's move says so (int_patients_mapped.previous_person_id)."""
    from reactivation.transform import mart_fingerprints

    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract, PEOPLE_SELECTION)

    with psycopg.connect(warehouse) as conn:
        # A person with one record, and a coded procedure of another record in a value set they are not in.
        patient_id, patient_key, person_id, value_set_id, procedure_code, system, performed = conn.execute(
            "select patients.patient_id, patients.patient_key, facts.person_id, coded.value_set_id,"
            " procedures.code, procedures.code_system, procedures.performed_at"
            " from intermediate.int_person_facts as facts"
            " inner join intermediate.int_patients_mapped as mapped on facts.person_id = mapped.person_id"
            " inner join staging.stg_emr__patients as patients on mapped.patient_key = patients.patient_key"
            " inner join intermediate.int_clinical_events_coded as coded"
            " on coded.event_kind = 'procedure' and coded.person_id <> facts.person_id"
            " and facts.active_value_set_ids not like '%%|' || coded.value_set_id || '|%%'"
            " inner join staging.stg_emr__procedures as procedures on coded.event_id = procedures.procedure_key"
            " where (select count(*) from intermediate.int_patients_mapped as own"
            " where own.person_id = facts.person_id) = 1"
            " order by patients.patient_key, coded.event_id limit 1"
        ).fetchone()
        # The duplicate's id: one whose key sorts after the record's, so the person keeps its id.
        duplicate_id = _duplicate_id(conn, patient_key, before=False)
    record = next(row for row in _read(extract, "patients") if row["patient_id"] == patient_id)
    procedure = {"patient_id": duplicate_id, "code": procedure_code, "code_system": system,
                 "performed_at": performed.isoformat(), "encounter_id": "", "description": "Procedure"}  # fmt: skip
    stranger = dict(record, patient_id=duplicate_id, first_name="Zebulon", last_name="Quarrington",
                    birth_date="1911-11-11", phone="+1 212 555 0199", email="zq@example.org",
                    address_line="1 Nowhere Ln", postal_code="99999")  # fmt: skip

    def in_value_set(person: str) -> bool:
        with psycopg.connect(warehouse) as conn:
            listed = conn.execute(
                "select active_value_set_ids from intermediate.int_person_facts where person_id = %s", (person,)
            ).fetchone()[0]
        return f"|{value_set_id}|" in listed

    for night, as_of, duplicate in (("joined", NEXT_DAY, dict(record, patient_id=duplicate_id)),
                                    ("left", DAY_AFTER, stranger)):  # fmt: skip
        delta = state_tmp / night / "loc_01"
        _write_delta(delta, "patients", [duplicate])
        if night == "joined":
            _write_delta(delta, "procedures", [procedure])
        loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", as_of, str(delta))
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        built = reactivation("transform", "--as-of", as_of, "--select", PEOPLE_SELECTION)
        assert built.returncode == 0, built.stdout[-3000:]
        with psycopg.connect(warehouse) as conn:
            holder = conn.execute(
                "select mapped.person_id from intermediate.int_patients_mapped as mapped"
                " inner join staging.stg_emr__patients as patients on mapped.patient_key = patients.patient_key"
                " where patients.patient_id = %s",
                (duplicate_id,),
            ).fetchone()[0]
        assert (holder == person_id) == (night == "joined"), night
        assert in_value_set(person_id) == (night == "joined"), night

    tables = ("intermediate.int_person_facts",)
    incremental = mart_fingerprints(warehouse, tables)
    rebuilt = reactivation("transform", "--as-of", DAY_AFTER, "--select", PEOPLE_SELECTION, "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert mart_fingerprints(warehouse, tables) == incremental


def test_a_closing_event_comes_into_view_when_the_as_of_date_reaches_it(warehouse: str, state_tmp: Path) -> None:
    """A procedure dated the day after tomorrow, loaded tomorrow: tomorrow's night re-derives the
    person without it (not yet on or before the as-of date); the night after, with no new load, it
    must become the person's latest closing event, as a full rebuild has it."""
    from reactivation.transform import mart_fingerprints

    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract, CODED_SELECTION)

    with psycopg.connect(warehouse) as conn:
        procedure_key, patient_key = conn.execute(
            "select coded.event_id, coded.patient_key from intermediate.int_clinical_events_coded as coded"
            " inner join intermediate.int_care_gap_rule_value_sets as rule_value_sets"
            " on coded.value_set_id = rule_value_sets.value_set_id and rule_value_sets.value_set_role = 'closing'"
            " where coded.event_kind = 'procedure' order by coded.event_id limit 1"
        ).fetchone()
        patient_id, code = conn.execute(
            "select patient_id, code from staging.stg_emr__procedures where procedure_key = %s", (procedure_key,)
        ).fetchone()
    procedures = _read(extract, "procedures")
    procedure = next(row for row in procedures if (row["patient_id"], row["code"]) == (patient_id, code))
    delta = state_tmp / "future" / "loc_01"
    _write_delta(delta, "procedures", [dict(procedure, performed_at=f"{DAY_AFTER}T09:00:00", encounter_id="")])
    loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", NEXT_DAY, str(delta))
    assert loaded.returncode == 0, loaded.stderr[-2000:]

    latest = (
        "select max(closing.event_date) from intermediate.int_care_gap_closing_events as closing"
        " inner join intermediate.int_patients_mapped as mapped on closing.person_id = mapped.person_id"
        " where mapped.patient_key = %s"
    )
    tables = ("intermediate.int_care_gap_closing_events",)
    for as_of in (NEXT_DAY, DAY_AFTER):
        built = reactivation("transform", "--as-of", as_of, "--select", CODED_SELECTION)
        assert built.returncode == 0, built.stdout[-3000:]
        with psycopg.connect(warehouse) as conn:
            seen = conn.execute(latest, (patient_key,)).fetchone()[0]
        assert (seen.isoformat() == DAY_AFTER) == (as_of == DAY_AFTER), (as_of, seen)
        # The new night's date reached the SQL without a whole-project parse (it is not a dbt var).
        night_log = (state_tmp / "state" / "dbt" / "logs" / "dbt.log").read_text().rsplit("Running with dbt", 1)[1]
        assert "Unable to do partial parsing" not in night_log
        assert "Partial parse save file not found" not in night_log
    incremental = mart_fingerprints(warehouse, tables)
    rebuilt = reactivation("transform", "--as-of", DAY_AFTER, "--select", CODED_SELECTION, "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert mart_fingerprints(warehouse, tables) == incremental


def test_the_households_follow_a_person_who_moves_out_and_a_new_one_who_shares_a_phone(
    warehouse: str, state_tmp: Path
) -> None:
    """One night a person moves out (a new address and phone: no link left) and a new patient arrives
    with another household's phone. The mover must live alone, the rest of their household must stay
    together without them, and the newcomer must join the phone's household, as a full rebuild has
    it; the night groups again only the people whose links changed and their households."""
    from reactivation.transform import mart_fingerprints

    reactivation = _command(warehouse, state_tmp)
    extract = state_tmp / "extract"
    _first_night(reactivation, extract, HOUSEHOLD_SELECTION)

    with psycopg.connect(warehouse) as conn:
        people = conn.execute("select count(*) from intermediate.int_households").fetchone()[0]
        # A person of one record in a household of two or more, linked by anything but a guarantor.
        mover_id, mover, household = conn.execute(
            "select patients.patient_id, households.person_id, households.household_id"
            " from intermediate.int_households as households"
            " inner join intermediate.int_patients_identified as identified"
            " on households.person_id = identified.person_id"
            " inner join staging.stg_emr__patients as patients on identified.patient_key = patients.patient_key"
            " where households.household_size >= 2 and households.linked_by not like '%%guarantor%%'"
            " and (select count(*) from intermediate.int_patients_identified as own"
            " where own.person_id = households.person_id) = 1"
            " order by households.person_id limit 1"
        ).fetchone()
        housemates = {row[0] for row in conn.execute(
            "select person_id from intermediate.int_households where household_id = %s and person_id <> %s",
            (household, mover),
        )}  # fmt: skip
        # Another household's member with a valid phone shared by few.
        host_id, host, host_size = conn.execute(
            "select patients.patient_id, households.person_id, households.household_size"
            " from intermediate.int_households as households"
            " inner join intermediate.int_patients_identified as identified"
            " on households.person_id = identified.person_id"
            " inner join intermediate.int_patients_normalised as patients"
            " on identified.patient_key = patients.patient_key"
            " where households.household_id <> %s and patients.phone_e164_valid is not null"
            " and households.household_size < 4"
            " order by households.person_id limit 1",
            (household,),
        ).fetchone()
    records = {row["patient_id"]: row for row in _read(extract, "patients")}
    moved = dict(records[mover_id], address_line="1 Nowhere Ln", postal_code="99999", phone="+1 212 555 0199",
                 household_key="", guarantor_id="")  # fmt: skip
    newcomer = dict(records[host_id], patient_id="hh-newcomer", first_name="Zebulon", last_name="Quarrington",
                    birth_date="1911-11-11", email="zq@example.org", address_line="2 Elsewhere Rd",
                    postal_code="99998", household_key="", guarantor_id="")  # fmt: skip
    delta = state_tmp / "night" / "loc_01"
    _write_delta(delta, "patients", [moved, newcomer])
    loaded = reactivation("load", "--format", "csv", "--location", "loc_01", "--extract-date", NEXT_DAY, str(delta))
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    built = reactivation("transform", "--as-of", NEXT_DAY, "--select", HOUSEHOLD_SELECTION)
    assert built.returncode == 0, built.stdout[-3000:]

    with psycopg.connect(warehouse) as conn:
        rows = {row[0]: row[1:] for row in conn.execute(
            "select person_id, household_id, household_size, built_at = (select max(built_at)"
            " from intermediate.int_households) from intermediate.int_households"
        )}  # fmt: skip
        newcomer_person = conn.execute(
            "select identified.person_id from intermediate.int_patients_identified as identified"
            " inner join staging.stg_emr__patients as patients on identified.patient_key = patients.patient_key"
            " where patients.patient_id = 'hh-newcomer'"
        ).fetchone()[0]
    assert newcomer_person != host
    assert rows[mover][1] == 1
    assert all(rows[mate][0] != rows[mover][0] for mate in housemates)
    assert len({rows[mate][0] for mate in housemates}) == 1
    assert all(rows[mate][1] == len(housemates) for mate in housemates)
    assert rows[newcomer_person][0] == rows[host][0]
    assert rows[host][1] == host_size + 1
    regrouped = sum(1 for row in rows.values() if row[2])
    assert 1 + len(housemates) + host_size + 1 <= regrouped < people / 2, (regrouped, people)

    tables = ("intermediate.int_households",)
    incremental = mart_fingerprints(warehouse, tables)
    rebuilt = reactivation("transform", "--as-of", NEXT_DAY, "--select", HOUSEHOLD_SELECTION, "--full-refresh")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:]
    assert mart_fingerprints(warehouse, tables) == incremental


def test_the_project_compiles_on_a_new_warehouse(warehouse: str, monkeypatch, state_tmp: Path) -> None:
    """`dbt compile` before any build: the tests' filter looks at tables that do not exist yet."""
    from datetime import date

    from reactivation.settings import get_settings
    from reactivation.transform import run_dbt

    monkeypatch.setenv("REACTIVATION_STATE_DIR", str(state_tmp / "state"))
    get_settings.cache_clear()
    process, _ = run_dbt(warehouse, ["compile"], as_of=date.fromisoformat(AS_OF))
    assert process.returncode == 0, process.stdout[-3000:]
