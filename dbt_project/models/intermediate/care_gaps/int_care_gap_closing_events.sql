{#- Sorts every closing event (about 6M at 1M patients): 1 GB per sort keeps it in memory. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook=[
            "{% if target.type == 'postgres' %}set local work_mem = '1GB'{% endif %}",
            "{{ closing_events_forget_people_to_rederive(this) }}",
        ],
        post_hook=[
            "create index if not exists int_care_gap_closing_events_person_idx on {{ this }} (person_id)",
            "{{ remember_definition_and_as_of(this, closing_events_definition()) }}",
        ],
    )
}}

-- The evidence interval rules close on, narrowed before care_gaps reads it: for each
-- person, rule and closing value set, the latest event of the value set on or before
-- the as-of date, with the value of the rule's latest valued closing event (the HbA1c
-- result that decides whether the 3- or 6-month interval applies). It needs only the
-- coded events, so it is built beside int_person_facts rather than inside care_gaps.
-- Incremental by person (macros/closing_events_incremental.sql): a night derives again the
-- people whose coded events changed, whose evidence came from a record re-derived tonight,
-- or who have an event dated since the last night's as-of date; every other row stands.
-- Each row names the records its event and its latest value came from
-- (evidence_patient_key, latest_value_patient_key) for that.
-- The records re-derived tonight, read by the pre-hook:
-- depends_on: {{ ref('int_clinical_events_unioned') }}
-- depends_on: {{ ref('int_patients_mapped') }}
with coded_events as (
    select * from {{ ref('int_clinical_events_coded') }}
    {%- if not closing_events_rebuilt_whole(this) %}
        where person_id in (select people.person_id from pg_temp.closing_events_people_tonight as people)
    {%- endif %}
),

rule_value_sets as (
    select * from {{ ref('int_care_gap_rule_value_sets') }}
    where value_set_role = 'closing'
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

closing_events_to_date as (
    select
        coded_events.person_id,
        rule_value_sets.rule_id,
        rule_value_sets.value_set_id,
        rule_value_sets.interval_months,
        rule_value_sets.min_age_at_event,
        coded_events.event_date,
        coded_events.value_numeric,
        coded_events.location_id,
        coded_events.patient_key
    from coded_events
    inner join rule_value_sets
        on coded_events.value_set_id = rule_value_sets.value_set_id
    cross join run_parameters
    where coded_events.event_date <= run_parameters.as_of_date
),

latest_values as (
    select
        person_id,
        rule_id,
        value_numeric as latest_value,
        patient_key as latest_value_patient_key,
        row_number() over (
            partition by person_id, rule_id
            order by event_date desc, value_numeric desc, patient_key asc
        ) as value_recency_rank
    from closing_events_to_date
    where value_numeric is not null
),

closing_events as (
    select
        *,
        row_number() over (
            partition by person_id, rule_id, value_set_id
            order by event_date desc, value_numeric desc nulls last, location_id asc, patient_key asc
        ) as value_set_recency_rank
    from closing_events_to_date
),

final as (
    select
        closing_events.person_id,
        closing_events.rule_id,
        closing_events.value_set_id,
        closing_events.interval_months,
        closing_events.min_age_at_event,
        closing_events.event_date,
        closing_events.value_numeric,
        closing_events.location_id,
        latest_values.latest_value,
        closing_events.patient_key as evidence_patient_key,
        latest_values.latest_value_patient_key,
        {{ build_started_at() }} as built_at
    from closing_events
    left join latest_values
        on
            closing_events.person_id = latest_values.person_id
            and closing_events.rule_id = latest_values.rule_id
            and latest_values.value_recency_rank = 1
    where closing_events.value_set_recency_rank = 1
)

select * from final
