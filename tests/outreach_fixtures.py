"""A small warehouse with the marts outreach reads, written directly (no dbt), for outreach engine tests.

People are surrogate ids; phones and emails are fictional. Each helper writes
exactly the rows a test needs, so the assertions can be exact.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import psycopg

from reactivation.warehouse import ensure_schema

ROOT = Path(__file__).resolve().parents[1]
REASONS_SEED = ROOT / "dbt_project" / "seeds" / "outreach" / "message_reasons.csv"

DDL = """
create schema if not exists marts;
create schema if not exists staging;
create schema if not exists reference;
create table marts.outreach_candidates (
    person_id text, household_id text, location_id text, rule_id text, reason text, other_open_rules text,
    segment text, priority_score numeric, preferred_channel text, language text, contactable_channels text,
    timezone text, due_date date, days_overdue integer, as_of date);
create table marts.outreach_suppressions (person_id text, rule_id text, location_id text, reason_code text,
    detail text, as_of date);
create table marts.care_gaps (person_id text, rule_id text, status text);
create table marts.persons (person_id text, home_location_id text, timezone text, birth_date date, sex text,
    language text, phone_e164 text, phone_is_valid boolean, email text, email_is_valid boolean,
    is_deceased boolean, deceased_date date, household_id text);
create table marts.person_sources (source_system text, source_location_id text, patient_id text,
    patient_key text, person_id text);
create table staging.stg_emr__locations (location_id text, name text, phone_e164 text, booking_url text,
    extract_date date);
create table staging.stg_emr__appointments (source_system text, source_location_id text, patient_id text,
    status text, scheduled_at timestamptz);
create table staging.stg_emr__patients (patient_key text, first_name text, last_name text, extract_date date);
create table reference.message_reasons (rule_id text, language text, reason text);
"""


@dataclass
class Person:
    person_id: str
    location_id: str = "loc_a"
    household_id: str | None = None
    rule_id: str = "dormant"
    timezone: str = "America/Chicago"
    language: str = "en"
    channels: str = "sms,email,call"
    phone: str | None = None
    email: str | None = None
    priority_score: float = 50.0
    segment: str = "lapsed_preventive"


def build_warehouse(url: str, people: list[Person]) -> None:
    ensure_schema(url)
    with psycopg.connect(url) as conn:
        conn.execute(DDL)
        with REASONS_SEED.open(newline="") as handle:
            reasons = [(r["rule_id"], r["language"], r["reason"]) for r in csv.DictReader(handle)]
        with conn.cursor() as cur:
            cur.executemany("insert into reference.message_reasons values (%s, %s, %s)", reasons)
            cur.executemany(
                "insert into staging.stg_emr__locations values (%s, %s, %s, %s, '2026-11-01')",
                [("loc_a", "Riverside Dental", "+14025550100", "rd.example/book"),
                 ("loc_b", "Northside Medical", "+12125550100", None)],
            )  # fmt: skip
            for i, person in enumerate(people):
                household = person.household_id or person.person_id
                phone = person.phone or f"+1402318{5600 + i:04d}"
                email = person.email or f"patient{i}@example.org"
                cur.execute(
                    "insert into marts.outreach_candidates values (%s, %s, %s, %s, 'r', null, %s, %s, %s, %s, %s, %s,"
                    " null, 30, '2026-11-01')",
                    (person.person_id, household, person.location_id, person.rule_id, person.segment,
                     person.priority_score, person.channels.split(",")[0], person.language, person.channels,
                     person.timezone),
                )  # fmt: skip
                cur.execute("insert into marts.care_gaps values (%s, %s, 'open')", (person.person_id, person.rule_id))
                cur.execute(
                    "insert into marts.persons values (%s, %s, %s, '1980-01-01', 'F', %s, %s, true, %s, true, false,"
                    " null, %s)",
                    (person.person_id, person.location_id, person.timezone, person.language, phone, email, household),
                )
                cur.execute(
                    "insert into marts.person_sources values ('native_csv', %s, %s, %s, %s)",
                    (person.location_id, f"src-{person.person_id}", f"key-{person.person_id}", person.person_id),
                )
