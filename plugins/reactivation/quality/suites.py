"""The quality gate's expectation suites, written as data, and the GX file context rendered from them.

The gate loads the committed file context under ``expectations/gx/``; this module is
where that context comes from. ``python -m reactivation.quality.suites`` rewrites it
(deterministic ids, sorted keys), and a test fails when the committed files and this
module disagree, so a reviewer reads one diff.

What GX checks here, and dbt does not (dbt tests keep checking structure: keys,
nulls, relationships, accepted values on the models):

* the raw extracts as delivered: key columns present and unique inside each
  location's latest file (staging de-duplicates them, so dbt cannot see it),
  plausible dates, contact fields well formed at expected rates, each location's
  extract fresh and its size within the range of its previous extracts;
* the outreach marts: built for this run's date, volume within bounds of the
  previous successful runs, and no candidate who the extract itself says is opted
  out, deceased or already booked (re-derived from the staged source facts, not
  from the suppression model that dbt's tests compare the candidates with).

Every expectation carries ``meta``: ``name`` (a stable id for trend reports),
``severity`` (``critical`` blocks sends, ``warning`` reports), ``scope``
(``location``: its query returns one row per failing location, with a
``location_id`` column; ``global``: a failure blocks every location) and
``reason``: the plain-words sentence a blocked batch carries, filled from the
failing row's columns and the run's settings. Queries return ids and counts only,
never a patient value, and read the run's parameters from session settings
(``reactivation.as_of``, ``reactivation.max_extract_age_days``,
``reactivation.volume_tolerance_pct``) that the gate sets on its connection.
"""

from __future__ import annotations

import json
import sys
import textwrap
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from reactivation.settings import PROJECT_ROOT

# The languages outreach has message templates in (one file per language per channel).
TEMPLATE_LANGUAGES = tuple(
    sorted(p.stem for p in (Path(__file__).parents[1] / "outreach" / "templates" / "sms").glob("*.j2"))
) or ("en",)

CONTEXT_ROOT = PROJECT_ROOT / "expectations"
GX_DIR = CONTEXT_ROOT / "gx"
DATASOURCE = "warehouse"
BATCH_DEFINITION = "whole table"
CHECKPOINT = "reactivation_gate"
# Only the count is kept: no partial_unexpected_list, no unexpected rows (they could carry PHI).
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}

_ID_NAMESPACE = uuid.UUID("6f1c2b1e-3d44-4f0a-9a57-5c0f2f3b7a10")

AS_OF = "cast(current_setting('reactivation.as_of') as date)"
MAX_AGE_DAYS = "cast(current_setting('reactivation.max_extract_age_days') as integer)"
TOLERANCE_PCT = "cast(current_setting('reactivation.volume_tolerance_pct') as numeric)"

# GX's UnexpectedRowsExpectation, counting only (reactivation.quality.expectations): the query runs once.
QUERY_EXPECTATION = "counted_unexpected_rows_expectation"

Severity = Literal["critical", "warning"]
Scope = Literal["location", "global"]


@dataclass(frozen=True)
class Check:
    """One expectation: what it asserts (``description``, shown in Data Docs) and what a failure means."""

    name: str
    description: str
    severity: Severity
    scope: Scope
    reason: str
    type: str = QUERY_EXPECTATION
    kwargs: dict = field(default_factory=dict)

    @classmethod
    def sql(cls, name: str, description: str, severity: Severity, scope: Scope, reason: str, query: str) -> Check:
        return cls(name, description, severity, scope, reason, kwargs={"unexpected_rows_query": _tidy(query)})


@dataclass(frozen=True)
class Suite:
    """The checks on one table; the suite, its data asset and its validation definition share its name."""

    schema: str
    table: str
    checks: tuple[Check, ...]

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def _tidy(query: str) -> str:
    lines = [line.rstrip() for line in query.strip("\n").splitlines()]
    indent = min(len(line) - len(line.lstrip()) for line in lines if line)
    return "\n".join(line[indent:] for line in lines)


def _latest_files(entity: str, *, manifest: str = "raw.load_manifest") -> str:
    """Each location's latest loaded file of one entity: tonight's delivery, what these checks judge."""
    return f"""
        latest_files as (
            select ranked.load_id, ranked.location_id
            from (
                select
                    manifest.load_id,
                    manifest.location_id,
                    row_number() over (
                        partition by manifest.source_system, manifest.location_id
                        order by manifest.extract_date desc nulls last, manifest.load_id desc
                    ) as recency
                from {manifest} as manifest
                where manifest.status = 'loaded' and manifest.entity = '{entity}'
            ) as ranked
            where ranked.recency = 1
        )"""


def _rows_in_latest_file(entity: str, condition: str, *, join: str = "") -> str:
    """Per location, how many rows of its latest ``entity`` file (``records``) meet ``condition``."""
    latest_files = textwrap.dedent(_latest_files(entity)).strip()
    join_lines = "".join(f"\n{line}" for line in textwrap.dedent(join).strip("\n").splitlines())
    return (
        f"with {latest_files}\n\n"
        "select latest_files.location_id, count(*) as observed\n"
        "from {batch} as records\n"
        f"inner join latest_files on records.load_id = latest_files.load_id{join_lines}\n"
        f"where {condition}\n"
        "group by latest_files.location_id\n"
    )


def _unique_keys(entity: str, label: str, keys: tuple[str, ...]) -> Check:
    key_list = ", ".join(f"records.{k}" for k in keys)
    return Check.sql(
        f"{entity}_keys_unique",
        f"Inside each location's latest {label} file, no two rows share a key ({', '.join(keys)}). "
        "Exact repeats are quarantined at load; conflicting repeats would be silently collapsed downstream.",
        "critical",
        "location",
        f"the latest {label} extract has {{observed}} key(s) on more than one row",
        f"""
        with {_latest_files(entity).strip()},

        repeated_keys as (
            select records.load_id
            from {{batch}} as records
            inner join latest_files on records.load_id = latest_files.load_id
            group by records.load_id, {key_list}
            having count(*) > 1
        )

        select latest_files.location_id, count(*) as observed
        from repeated_keys
        inner join latest_files on repeated_keys.load_id = latest_files.load_id
        group by latest_files.location_id
        """,
    )


def _valid_share(column: str, flag: str, label: str, minimum_pct: int) -> Check:
    return Check.sql(
        f"patients_{column}_well_formed",
        f"In each location's latest patients file, at least {minimum_pct}% of the {label} given are well formed.",
        "warning",
        "location",
        f"only {{observed}}% of the {label} in the latest patients extract are well formed "
        f"(expected at least {minimum_pct}%)",
        f"""
        with {_latest_files("patients").strip()}

        select
            latest_files.location_id,
            round(100.0 * count(*) filter (where records.{flag}) / count(*), 1) as observed
        from {{batch}} as records
        inner join latest_files on records.load_id = latest_files.load_id
        where records.{column} is not null
        group by latest_files.location_id
        having count(*) filter (where records.{flag}) < {minimum_pct / 100} * count(*)
        """,
    )


LOAD_MANIFEST = Suite(
    "raw",
    "load_manifest",
    (
        Check.sql(
            "extracts_fresh",
            "Each location's latest loaded extract is no more than the allowed number of days older than "
            "the run's as-of date (REACTIVATION_MAX_EXTRACT_AGE_DAYS).",
            "critical",
            "location",
            "the latest extract is {observed} days older than the run date (allowed: {max_extract_age_days})",
            f"""
            select
                location_id,
                {AS_OF} - max(coalesce(extract_date, cast(finished_at as date))) as observed
            from {{batch}}
            where status = 'loaded'
            group by location_id
            having max(coalesce(extract_date, cast(finished_at as date))) < {AS_OF} - {MAX_AGE_DAYS}
            """,
        ),
        Check.sql(
            "keys_present",
            "In each location's latest file of every entity, at most 1% of the rows read were quarantined "
            "because an id column (the record's key or the patient it belongs to) was empty.",
            "critical",
            "location",
            "{observed}% of the rows of its latest {entity} extract have no id and were set aside (allowed: 1%)",
            """
            with latest_files as (
                select ranked.load_id, ranked.location_id, ranked.entity, ranked.rows_read
                from (
                    select
                        manifest.load_id,
                        manifest.location_id,
                        manifest.entity,
                        manifest.rows_read,
                        row_number() over (
                            partition by manifest.source_system, manifest.location_id, manifest.entity
                            order by manifest.extract_date desc nulls last, manifest.load_id desc
                        ) as recency
                    from {batch} as manifest
                    where manifest.status = 'loaded'
                ) as ranked
                where ranked.recency = 1
            ),

            rows_without_id as (
                select quarantine.load_id, count(distinct quarantine.source_line) as quarantined
                from raw.quarantine as quarantine
                inner join latest_files on quarantine.load_id = latest_files.load_id
                where quarantine.reason = 'required value is missing' and quarantine.column_name like '%\\_id'
                group by quarantine.load_id
            )

            select
                latest_files.location_id,
                min(latest_files.entity) as entity,
                max(round(100.0 * rows_without_id.quarantined / latest_files.rows_read, 1)) as observed
            from latest_files
            inner join rows_without_id on latest_files.load_id = rows_without_id.load_id
            where rows_without_id.quarantined > 0.01 * latest_files.rows_read
            group by latest_files.location_id
            """,
        ),
        Check.sql(
            "extract_volume_within_history",
            "The latest patients, appointments, encounters and contact preferences files of each location "
            "have a row count within REACTIVATION_VOLUME_TOLERANCE_PCT of the median of its five previous "
            "files of the same entity (entities of fewer than 20 rows are not judged).",
            "critical",
            "location",
            "the latest {entity} extract has {observed} rows where about {baseline} were expected "
            "(more than {volume_tolerance_pct}% off its previous extracts)",
            f"""
            with files as (
                select
                    manifest.location_id,
                    manifest.entity,
                    manifest.rows_loaded,
                    row_number() over (
                        partition by manifest.source_system, manifest.location_id, manifest.entity
                        order by manifest.extract_date desc nulls last, manifest.load_id desc
                    ) as recency
                from {{batch}} as manifest
                where
                    manifest.status = 'loaded'
                    and manifest.entity in ('patients', 'appointments', 'encounters', 'contact_preferences')
            ),

            baselines as (
                select
                    files.location_id,
                    files.entity,
                    percentile_cont(0.5) within group (order by files.rows_loaded) as baseline_rows
                from files
                where files.recency between 2 and 6
                group by files.location_id, files.entity
            )

            select
                files.location_id,
                files.entity,
                files.rows_loaded as observed,
                round(baselines.baseline_rows) as baseline
            from files
            inner join baselines
                on files.location_id = baselines.location_id and files.entity = baselines.entity
            where
                files.recency = 1
                and baselines.baseline_rows >= 20
                and abs(files.rows_loaded - baselines.baseline_rows)
                > baselines.baseline_rows * {TOLERANCE_PCT} / 100
            """,
        ),
        Check.sql(
            "latest_delivery_not_rejected",
            "The most recent file each location delivered for an entity was loaded, not rejected "
            "(a rejected file leaves the previous one in force).",
            "warning",
            "location",
            "{observed} of its most recent files were rejected, so older data is still in force",
            """
            select deliveries.location_id, count(*) as observed
            from (
                select
                    location_id,
                    status,
                    row_number() over (
                        partition by source_system, location_id, entity
                        order by load_id desc
                    ) as recency
                from {batch}
                where status in ('loaded', 'rejected')
            ) as deliveries
            where deliveries.recency = 1 and deliveries.status = 'rejected'
            group by deliveries.location_id
            """,
        ),
    ),
)

PATIENTS = Suite(
    "raw",
    "patients",
    (
        _unique_keys("patients", "patients", ("patient_id",)),
        Check.sql(
            "patients_born_before_as_of",
            "Nobody in a location's latest patients file is born after the run's as-of date.",
            "critical",
            "location",
            "the latest patients extract has {observed} birth date(s) after the run date",
            _rows_in_latest_file("patients", f"records.birth_date > {AS_OF}"),
        ),
        _valid_share("phone", "phone_is_valid", "phone numbers", 80),
        _valid_share("email", "email_is_valid", "email addresses", 80),
        Check.sql(
            "patients_language_is_a_code",
            "In each location's latest patients file, at least 95% of the languages given are language codes "
            "(en, es, pt-BR), so messages go out in a template language.",
            "warning",
            "location",
            "only {observed}% of the languages in the latest patients extract are language codes "
            "(expected at least 95%)",
            f"""
            with {_latest_files("patients").strip()}

            select
                latest_files.location_id,
                round(
                    100.0 * count(*) filter (where records.language ~ '^[A-Za-z]{{{{2,3}}}}([-_][A-Za-z0-9]+)*$')
                    / count(*),
                    1
                ) as observed
            from {{batch}} as records
            inner join latest_files on records.load_id = latest_files.load_id
            where records.language is not null
            group by latest_files.location_id
            having
                count(*) filter (where records.language ~ '^[A-Za-z]{{{{2,3}}}}([-_][A-Za-z0-9]+)*$')
                < 0.95 * count(*)
            """,
        ),
    ),
)

ENCOUNTERS = Suite(
    "raw",
    "encounters",
    (
        _unique_keys("encounters", "encounters", ("encounter_id",)),
        Check.sql(
            "encounters_not_in_future",
            "No completed visit in a location's latest encounters file is dated after the run's as-of date "
            "(one day of grace for time zones).",
            "critical",
            "location",
            "the latest encounters extract has {observed} visit(s) dated after the run date",
            _rows_in_latest_file("encounters", f"cast(records.encounter_date as date) > {AS_OF} + 1"),
        ),
        Check.sql(
            "encounters_after_birth",
            "No visit in a location's latest encounters file is dated before the patient's birth "
            "(one day of grace for time zones).",
            "critical",
            "location",
            "the latest encounters extract has {observed} visit(s) dated before the patient was born",
            _rows_in_latest_file(
                "encounters",
                "cast(records.encounter_date as date) < patients.birth_date - 1",
                join="""
                inner join staging.stg_emr__patients as patients
                    on
                        records.source_system = patients.source_system
                        and records.location_id_loaded = patients.source_location_id
                        and records.patient_id = patients.patient_id
                """,
            ),
        ),
    ),
)

APPOINTMENTS = Suite(
    "raw",
    "appointments",
    (
        _unique_keys("appointments", "appointments", ("appointment_id",)),
        Check.sql(
            "appointments_within_two_years",
            "No appointment in a location's latest appointments file is scheduled more than two years after "
            "the run's as-of date.",
            "warning",
            "location",
            "the latest appointments extract has {observed} appointment(s) more than two years ahead",
            _rows_in_latest_file("appointments", f"cast(records.scheduled_at as date) > {AS_OF} + 730"),
        ),
    ),
)

CONTACT_PREFERENCES = Suite(
    "raw",
    "contact_preferences",
    (
        _unique_keys("contact_preferences", "contact preferences", ("patient_id", "channel", "effective_date")),
        Check.sql(
            "contact_preferences_not_in_future",
            "No contact preference in a location's latest file takes effect after the run's as-of date.",
            "warning",
            "location",
            "the latest contact preferences extract has {observed} preference(s) dated after the run date",
            _rows_in_latest_file("contact_preferences", f"records.effective_date > {AS_OF}"),
        ),
    ),
)


def _built_for_this_run(table: str) -> Check:
    return Check.sql(
        f"{table}_built_for_this_run",
        f"Every row of {table} was built for this run's as-of date (a stale mart means the build did not run).",
        "critical",
        "global",
        f"{table} holds {{observed}} row(s) built for another date: the marts were not rebuilt for this run",
        f"""
        select count(*) as observed
        from {{batch}}
        where as_of is distinct from {AS_OF}
        having count(*) > 0
        """,
    )


def _volume(table: str, severity: Severity) -> Check:
    return Check(
        f"{table}_volume_within_history",
        f"The number of rows in {table} is within REACTIVATION_VOLUME_TOLERANCE_PCT of the median of the "
        "previous successful runs (no bound before the first one).",
        severity,
        "global",
        f"{table} has {{observed}} rows, outside {{min_value}}-{{max_value}} "
        "(±{volume_tolerance_pct}% of the previous successful runs)",
        type="expect_table_row_count_to_be_between",
        kwargs={"min_value": {"$PARAMETER": f"{table}_min_rows"}, "max_value": {"$PARAMETER": f"{table}_max_rows"}},
    )


_CANDIDATE_RECORDS = """
    inner join marts.person_sources as person_sources on candidates.person_id = person_sources.person_id"""
_SAME_RECORD = """
                source_records.source_system = person_sources.source_system
                and source_records.source_location_id = person_sources.source_location_id
                and source_records.patient_id = person_sources.patient_id"""

OUTREACH_CANDIDATES = Suite(
    "marts",
    "outreach_candidates",
    (
        _built_for_this_run("outreach_candidates"),
        _volume("outreach_candidates", "critical"),
        Check.sql(
            "candidates_not_opted_out",
            "No candidate's most recent preference for their preferred channel (or for every channel) in the "
            "extracts is an opt-out.",
            "critical",
            "location",
            "{observed} candidate(s) opted out of the channel they would be contacted on",
            f"""
            with candidate_preferences as (
                select
                    candidates.location_id,
                    candidates.person_id,
                    source_records.status,
                    rank() over (
                        partition by candidates.person_id
                        order by coalesce(source_records.effective_date, date '1900-01-01') desc
                    ) as recency
                from {{batch}} as candidates
                {_CANDIDATE_RECORDS.strip()}
                inner join staging.stg_emr__contact_preferences as source_records
                    on
                        {_SAME_RECORD.strip()}
                where
                    source_records.channel in (candidates.preferred_channel, 'any')
                    and coalesce(source_records.effective_date, {AS_OF}) <= {AS_OF}
            )

            select candidate_preferences.location_id, count(distinct candidate_preferences.person_id) as observed
            from candidate_preferences
            where candidate_preferences.recency = 1 and candidate_preferences.status = 'opt_out'
            group by candidate_preferences.location_id
            """,
        ),
        Check.sql(
            "candidates_not_deceased",
            "No candidate has a patient record, at any location, marked deceased or with a date of death.",
            "critical",
            "location",
            "{observed} candidate(s) have a patient record marked deceased",
            f"""
            select candidates.location_id, count(distinct candidates.person_id) as observed
            from {{batch}} as candidates
            {_CANDIDATE_RECORDS.strip()}
            inner join staging.stg_emr__patients as source_records
                on
                    {_SAME_RECORD.strip()}
            where source_records.deceased or source_records.deceased_date is not null
            group by candidates.location_id
            """,
        ),
        Check.sql(
            "candidates_not_already_booked",
            "No candidate has a booked appointment, at any location, on a day after the run's as-of date.",
            "critical",
            "location",
            "{observed} candidate(s) already have an appointment booked",
            f"""
            select candidates.location_id, count(distinct candidates.person_id) as observed
            from {{batch}} as candidates
            {_CANDIDATE_RECORDS.strip()}
            inner join staging.stg_emr__appointments as source_records
                on
                    {_SAME_RECORD.strip()}
            where
                source_records.status = 'booked'
                and cast(source_records.scheduled_at as date) > {AS_OF}
                and coalesce(cast(source_records.created_at as date), {AS_OF}) <= {AS_OF}
            group by candidates.location_id
            """,
        ),
        Check.sql(
            "candidates_time_zone_known",
            "At most 10% of a location's candidates fall back to UTC for quiet hours (their location has no "
            "time zone on file).",
            "warning",
            "location",
            "{observed}% of its candidates have no local time zone (quiet hours fall back to UTC)",
            """
            select
                location_id,
                round(100.0 * count(*) filter (where timezone = 'UTC') / count(*), 1) as observed
            from {batch}
            group by location_id
            having count(*) filter (where timezone = 'UTC') > 0.1 * count(*)
            """,
        ),
        Check(
            "candidates_language_has_templates",
            "At least 95% of candidates prefer a language the message templates are written in "
            f"({', '.join(TEMPLATE_LANGUAGES)}); the others are written to in English.",
            "warning",
            "global",
            "{observed} candidate(s) prefer a language without message templates and would get English",
            type="expect_column_values_to_be_in_set",
            kwargs={"column": "language", "value_set": list(TEMPLATE_LANGUAGES), "mostly": 0.95},
        ),
        Check(
            "candidates_priority_in_range",
            "Every candidate's priority score is between 0 and 110.",
            "warning",
            "global",
            "{observed} candidate(s) have a priority score outside 0-110",
            type="expect_column_values_to_be_between",
            kwargs={"column": "priority_score", "min_value": 0, "max_value": 110},
        ),
    ),
)

OUTREACH_SUPPRESSIONS = Suite(
    "marts",
    "outreach_suppressions",
    (
        _built_for_this_run("outreach_suppressions"),
        _volume("outreach_suppressions", "warning"),
        Check.sql(
            "suppressions_mostly_reachable",
            "At most 80% of the people a location suppresses are suppressed for lack of a valid contact "
            "(a higher share points at a broken phone or email feed).",
            "warning",
            "location",
            "{observed}% of the people it suppresses have no valid phone or email",
            """
            select
                persons.home_location_id as location_id,
                round(
                    100.0 * count(distinct suppressions.person_id) filter (
                        where suppressions.reason_code = 'no_valid_contact'
                    ) / count(distinct suppressions.person_id),
                    1
                ) as observed
            from {batch} as suppressions
            inner join marts.persons as persons on suppressions.person_id = persons.person_id
            group by persons.home_location_id
            having
                count(distinct suppressions.person_id) filter (where suppressions.reason_code = 'no_valid_contact')
                > 0.8 * count(distinct suppressions.person_id)
            """,
        ),
    ),
)

SUITES: tuple[Suite, ...] = (
    LOAD_MANIFEST,
    PATIENTS,
    ENCOUNTERS,
    APPOINTMENTS,
    CONTACT_PREFERENCES,
    OUTREACH_CANDIDATES,
    OUTREACH_SUPPRESSIONS,
)


def volume_checks() -> list[tuple[Suite, Check]]:
    """The row-count checks whose bounds the gate computes from the previous successful runs."""
    return [(s, c) for s in SUITES for c in s.checks if c.type == "expect_table_row_count_to_be_between"]


# -- rendering the file context --------------------------------------------------------------------


def _id(kind: str, name: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"{kind}:{name}"))


def _suite_json(suite: Suite) -> dict:
    expectations = []
    for check in suite.checks:
        expectations.append(
            {
                "description": check.description,
                "id": _id("expectation", f"{suite.name}:{check.name}"),
                "kwargs": check.kwargs,
                "meta": {"name": check.name, "reason": check.reason, "scope": check.scope, "severity": check.severity},
                "severity": check.severity,
                "type": check.type,
            }
        )
    return {
        "expectations": expectations,
        "id": _id("suite", suite.name),
        "meta": {"great_expectations_version": _gx_version(), "table": suite.name},
        "name": suite.name,
        "notes": f"Generated by reactivation.quality.suites: the gate's checks on {suite.name}.",
    }


def _gx_version() -> str:
    from importlib.metadata import version

    return version("great_expectations")


def _validation_definition_json(suite: Suite) -> dict:
    return {
        "data": {
            "asset": {"id": _id("asset", suite.name), "name": suite.name},
            "batch_definition": {"id": _id("batch_definition", suite.name), "name": BATCH_DEFINITION},
            "datasource": {"id": _id("datasource", DATASOURCE), "name": DATASOURCE},
        },
        "id": _id("validation_definition", suite.name),
        "name": suite.name,
        "suite": {"id": _id("suite", suite.name), "name": suite.name},
    }


def _checkpoint_json() -> dict:
    return {
        "actions": [],
        "id": _id("checkpoint", CHECKPOINT),
        "name": CHECKPOINT,
        "result_format": RESULT_FORMAT,
        "validation_definitions": [{"id": _id("validation_definition", s.name), "name": s.name} for s in SUITES],
    }


def _store(base_directory: str, *, suppress_id: bool = True) -> dict:
    backend: dict = {"class_name": "TupleFilesystemStoreBackend", "base_directory": base_directory}
    if suppress_id:
        backend["suppress_store_backend_id"] = True
    return backend


CONFIG_HEADER = """\
# The quality gate's Great Expectations 1.x file context. Generated by
# `python -m reactivation.quality.suites` from plugins/reactivation/quality/suites.py:
# edit the suites there, regenerate, and commit both.
#
# Nothing secret lives here. ${WAREHOUSE_URL} and the two folders are filled in at run
# time by reactivation.quality.context (the run's warehouse URL, carrying the run's
# parameters as session settings; validation results and Data Docs under
# REACTIVATION_STATE_DIR). uncommitted/ is ignored by git.
"""


def _config() -> dict:
    assets = {
        s.name: {
            "type": "table",
            "id": _id("asset", s.name),
            "table_name": s.table,
            "schema_name": s.schema,
            "batch_metadata": {},
            "batch_definitions": {BATCH_DEFINITION: {"id": _id("batch_definition", s.name), "partitioner": None}},
        }
        for s in SUITES
    }
    return {
        "config_version": 4.0,
        "analytics_enabled": False,
        "data_context_id": _id("data_context", "reactivation"),
        "config_variables_file_path": None,
        "plugins_directory": None,
        "progress_bars": {"globally": False, "metric_calculations": False},
        "stores": {
            "expectations_store": {"class_name": "ExpectationsStore", "store_backend": _store("expectations/")},
            "validation_results_store": {
                "class_name": "ValidationResultsStore",
                "store_backend": _store("${REACTIVATION_GX_RESULTS_DIR}"),
            },
            "checkpoint_store": {"class_name": "CheckpointStore", "store_backend": _store("checkpoints/")},
            "validation_definition_store": {
                "class_name": "ValidationDefinitionStore",
                "store_backend": _store("validation_definitions/"),
            },
        },
        "expectations_store_name": "expectations_store",
        "validation_results_store_name": "validation_results_store",
        "checkpoint_store_name": "checkpoint_store",
        "data_docs_sites": {
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": _store("${REACTIVATION_DATA_DOCS_DIR}", suppress_id=False),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
        "fluent_datasources": {
            DATASOURCE: {
                "type": "postgres",
                "id": _id("datasource", DATASOURCE),
                "connection_string": "${WAREHOUSE_URL}",
                "assets": assets,
            }
        },
    }


def _dump_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render_context() -> dict[str, str]:
    """Every committed file of the context, by path relative to ``expectations/``."""
    files = {
        "gx/great_expectations.yml": CONFIG_HEADER + yaml.safe_dump(_config(), sort_keys=False, width=120),
        "gx/.gitignore": "uncommitted/\n",
        f"gx/checkpoints/{CHECKPOINT}.json": _dump_json(_checkpoint_json()),
    }
    for suite in SUITES:
        files[f"gx/expectations/{suite.schema}/{suite.table}.json"] = _dump_json(_suite_json(suite))
        files[f"gx/validation_definitions/{suite.name}.json"] = _dump_json(_validation_definition_json(suite))
    return files


def write_context(root: Path = CONTEXT_ROOT) -> list[Path]:
    """(Re)write the committed context; files of suites that no longer exist are removed."""
    rendered = render_context()
    for folder in ("gx/expectations", "gx/validation_definitions", "gx/checkpoints"):
        for stale in (root / folder).rglob("*.json") if (root / folder).exists() else []:
            if str(stale.relative_to(root)) not in rendered:
                stale.unlink()
    written = []
    for relative, text in rendered.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    changed = write_context()
    print(f"{len(changed)} file(s) written under {CONTEXT_ROOT}", file=sys.stderr)
