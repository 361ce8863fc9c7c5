{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook="{{ coded_events_forget_all(this) }}",
        post_hook=[
            "{{ coded_events_forget_replaced_rows(this) }}",
            "create index if not exists int_clinical_events_coded_record_idx on {{ this }} (patient_key)",
            "{{ remember_definition(this, coded_events_definition) }}",
        ],
    )
}}

-- Clinical events matched to the value sets of the rule catalog, by code (never
-- by display text): exact codes by equality, prefix codes (match = 'prefix',
-- e.g. ICD-10-CM E11 for every type 2 diabetes code) by the code's leading
-- characters. Prefixes are matched with an equi-join on left(code, n), so the
-- match stays a hash join however many events there are.
-- Each match carries the event's columns straight away (no join back to the events by
-- id), and the events are read once per kind of match (not materialized: never held as a
-- whole): at 10M events the join back and the distinct over every match cost more than
-- the matching itself.
-- Incremental by patient record (macros/incremental_by_record.sql): a night matches the
-- events of the records int_clinical_events_unioned wrote tonight and of the records
-- int_patients_mapped wrote tonight (matched to another person), and keeps every other
-- record's rows.
{%- set rebuilt_whole = coded_events_rebuilt_whole(this) %}
with
{%- if not rebuilt_whole %}
records_to_rederive as (
    {{ records_rederived_tonight() }}
),
{%- endif %}

events as not materialized (
    select * from {{ ref('int_clinical_events_unioned') }}
    {%- if not rebuilt_whole %}
        where patient_key in (select records_to_rederive.patient_key from records_to_rederive)
    {%- endif %}
),

events_for_exact_codes as (
    select * from events
),

events_for_prefix_codes as (
    select * from events
),

patients as (
    select * from {{ ref('int_patients_mapped') }}
),

value_set_codes as (
    select * from {{ ref('value_sets') }}
),

normalised_codes as (
    select
        value_set_id,
        lower(coalesce(match, 'exact')) as match_type,
        case
            when upper(code_system) in ('CPT', 'HCPCS', 'CDT') then 'HCPCS'
            when upper(code_system) in ('SNOMED', 'SNOMEDCT', 'SNOMED-CT', 'SCT') then 'SNOMED'
            when upper(code_system) in ('ICD10CM', 'ICD10', 'ICD-10-CM') then 'ICD10CM'
            else upper(code_system)
        end as code_system_key,
        upper(replace(trim(code), '.', '')) as code_key
    from value_set_codes
),

exact_codes as (
    select distinct
        value_set_id,
        code_system_key,
        code_key
    from normalised_codes
    where match_type = 'exact'
),

prefix_codes as (
    select distinct
        value_set_id,
        code_system_key,
        code_key,
        length(code_key) as prefix_length
    from normalised_codes
    where match_type = 'prefix'
),

prefix_lengths as (
    select distinct
        code_system_key,
        prefix_length
    from prefix_codes
),

-- One row per event and value set: exact_codes is distinct, so an event meets each
-- value set at most once here.
exact_matches as (
    select
        events.event_id,
        exact_codes.value_set_id,
        events.event_kind,
        events.patient_key,
        events.event_date,
        events.active_until,
        events.code_system,
        events.code,
        events.value_numeric,
        events.location_id
    from events_for_exact_codes as events
    inner join exact_codes
        on
            events.code_system_key = exact_codes.code_system_key
            and events.code_key = exact_codes.code_key
),

event_prefixes as (
    select
        events.*,
        left(events.code_key, prefix_lengths.prefix_length) as code_prefix,
        prefix_lengths.prefix_length
    from events_for_prefix_codes as events
    inner join prefix_lengths
        on events.code_system_key = prefix_lengths.code_system_key
),

-- An event may meet one value set through two prefixes (E11 and E119), or through a
-- prefix and an exact code: distinct, and nothing exact_matches already has.
prefix_matches as (
    select distinct
        event_prefixes.event_id,
        prefix_codes.value_set_id,
        event_prefixes.event_kind,
        event_prefixes.patient_key,
        event_prefixes.event_date,
        event_prefixes.active_until,
        event_prefixes.code_system,
        event_prefixes.code,
        event_prefixes.value_numeric,
        event_prefixes.location_id
    from event_prefixes
    inner join prefix_codes
        on
            event_prefixes.code_system_key = prefix_codes.code_system_key
            and event_prefixes.prefix_length = prefix_codes.prefix_length
            and event_prefixes.code_prefix = prefix_codes.code_key
    left join exact_codes
        on
            prefix_codes.value_set_id = exact_codes.value_set_id
            and event_prefixes.code_system_key = exact_codes.code_system_key
            and event_prefixes.code_key = exact_codes.code_key
    where exact_codes.value_set_id is null
),

matches as (
    select * from exact_matches
    union all
    select * from prefix_matches
),

-- The person each matched event belongs to, from identity matching.
final as (
    select
        matches.event_id,
        matches.value_set_id,
        matches.event_kind,
        matches.patient_key,
        patients.person_id,
        matches.event_date,
        matches.active_until,
        matches.code_system,
        matches.code,
        matches.value_numeric,
        matches.location_id,
        {{ build_started_at() }} as built_at
    from matches
    inner join patients
        on matches.patient_key = patients.patient_key
)

select * from final
