{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook=[
            "{{ person_facts_plan_settings() }}",
            "{{ person_facts_forget_people_to_rederive(this) }}",
        ],
        post_hook=[
            "create index if not exists int_person_facts_person_idx on {{ this }} (person_id)",
            "{{ remember_definition_and_as_of(this, person_facts_definition()) }}",
        ],
    )
}}

-- What the care-gap rules need to know about each person on the as-of date: age,
-- sex, whether they were alive, which kinds of practice (medical, dental) they
-- are a patient of, their last visits, and every value set they are "in":
-- an unresolved condition, or any other coded event on or before the as-of date
-- (a mastectomy, a periodontal treatment); for value sets with a window
-- (value_set_windows: hospice and palliative care, 12 months) only recent events.
-- Incremental by person (macros/person_facts_incremental.sql): a night derives again the
-- people whose records, profile, age, death, last visits or value sets can have changed
-- since the last night; every other row stands.
-- The records re-derived tonight, read by the pre-hook:
-- depends_on: {{ ref('int_clinical_events_unioned') }}
with persons as (
    select * from {{ ref('int_person_profiles') }}
    {{ person_facts_people_tonight('person_id') }}
),

patients as (
    select * from {{ ref('int_patients_mapped') }}
    {{ person_facts_people_tonight('person_id') }}
),

locations as (
    select * from {{ ref('int_locations_classified') }}
),

last_visits as (
    select * from {{ ref('int_last_completed_visits') }}
    {{ person_facts_people_tonight('person_id') }}
),

coded_events as (
    select * from {{ ref('int_clinical_events_coded') }}
    {{ person_facts_records_tonight('patient_key') }}
),

value_set_windows as (
    select * from {{ ref('value_set_windows') }}
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

record_practice_types as (
    select
        patients.person_id,
        coalesce(locations.practice_type, 'medical') as practice_type,
        min(patients.location_id) as location_id
    from patients
    left join locations
        on
            patients.source_system = locations.source_system
            and patients.location_id = locations.location_id
    group by patients.person_id, coalesce(locations.practice_type, 'medical')
),

practice_membership as (
    select
        person_id,
        max(case when practice_type = 'medical' then location_id end) as medical_record_location_id,
        max(case when practice_type = 'dental' then location_id end) as dental_record_location_id
    from record_practice_types
    group by person_id
),

active_value_sets as (
    select distinct
        coded_events.person_id,
        coded_events.value_set_id
    from coded_events
    cross join run_parameters
    left join value_set_windows
        on coded_events.value_set_id = value_set_windows.value_set_id
    where
        (coded_events.event_date is null or coded_events.event_date <= run_parameters.as_of_date)
        and (coded_events.active_until is null or coded_events.active_until > run_parameters.as_of_date)
        and (
            coded_events.event_kind = 'condition'
            or value_set_windows.lookback_months is null
            or coded_events.event_date
            > {{ dbt.dateadd('month', '-1 * value_set_windows.lookback_months', 'run_parameters.as_of_date') }}
        )
),

value_set_lists as (
    select
        person_id,
        {{ dbt.concat(["'|'", dbt.listagg('value_set_id', "'|'", 'order by value_set_id'), "'|'"]) }}
            as active_value_set_ids
    from active_value_sets
    group by person_id
),

final as (
    select
        persons.person_id,
        persons.home_location_id,
        persons.birth_date,
        persons.sex,
        {{ age_in_years('persons.birth_date', 'run_parameters.as_of_date') }} as age_years,
        coalesce(persons.is_deceased, false)
        and (persons.deceased_date is null or persons.deceased_date <= run_parameters.as_of_date) as is_deceased,
        persons.deceased_date,
        (
            practice_membership.medical_record_location_id is not null
            or last_visits.last_medical_visit_date is not null
        ) as is_medical_patient,
        (
            practice_membership.dental_record_location_id is not null
            or last_visits.last_dental_visit_date is not null
        ) as is_dental_patient,
        coalesce(
            last_visits.last_medical_location_id, practice_membership.medical_record_location_id
        ) as medical_location_id,
        coalesce(
            last_visits.last_dental_location_id, practice_membership.dental_record_location_id
        ) as dental_location_id,
        last_visits.last_visit_date,
        last_visits.last_visit_location_id,
        last_visits.last_medical_visit_date,
        last_visits.last_medical_location_id,
        last_visits.last_dental_visit_date,
        last_visits.last_dental_location_id,
        coalesce(value_set_lists.active_value_set_ids, '|') as active_value_set_ids,
        {{ build_started_at() }} as built_at
    from persons
    cross join run_parameters
    left join practice_membership
        on persons.person_id = practice_membership.person_id
    left join last_visits
        on persons.person_id = last_visits.person_id
    left join value_set_lists
        on persons.person_id = value_set_lists.person_id
)

select * from final
