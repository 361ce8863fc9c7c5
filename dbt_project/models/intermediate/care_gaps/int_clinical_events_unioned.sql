-- Every coded clinical event of every patient record, whatever entity it came in:
-- visits (encounter visit types), procedures, observations (with their value)
-- and conditions (with onset and resolution). Codes are normalised for matching:
-- CPT, HCPCS and CDT share one key space (CDT codes are HCPCS level II D-codes),
-- SNOMED and ICD-10-CM spellings are unified, and dots are dropped (E11.9 = E119).
-- Keyed on the patient record (patient_key), not the person: the model needs nothing
-- from identity matching, so it builds while the matching runs.
-- Incremental (see macros/incremental_loads.sql): a night re-derives every event of the
-- patient records its new loads touch (a new or changed patient, encounter, procedure,
-- observation or condition, an event whose encounter changed, or the record an encounter
-- moved away from) and no other; a re-delivered file of any of the five entities
-- rebuilds it.
{%- set entities = ['patients', 'encounters', 'procedures', 'observations', 'conditions'] %}
{{
    config(
        materialized='incremental',
        unique_key='patient_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook="{{ forget_rows_of_superseded_loads(this, " ~ entities ~ ") }}",
    )
}}

with
{%- if is_incremental() %}
watermark as (
    select {{ loads_held_through(this) }} as load_id
),

new_encounters as (
    select
        encounter_key,
        source_system,
        source_location_id,
        encounter_id,
        patient_id
    from {{ ref('stg_emr__encounters') }}
    where load_id > (select watermark.load_id from watermark)
),

-- An encounter is keyed without its patient: a re-delivered one may have moved to another
-- record (a correction in the EMR), whose earlier visit event this model still holds.
records_losing_an_encounter as (
    select
        held_patients.source_system,
        held_patients.source_location_id,
        held_patients.patient_id
    from {{ this }} as held
    inner join new_encounters
        on held.event_id = new_encounters.encounter_key
    inner join {{ ref('stg_emr__patients') }} as held_patients
        on held.patient_key = held_patients.patient_key
    where held.event_kind = 'visit'
),

touched_records as (
    select
        source_system,
        source_location_id,
        patient_id
    from {{ ref('stg_emr__patients') }}
    where load_id > (select watermark.load_id from watermark)
    union
    select
        source_system,
        source_location_id,
        patient_id
    from new_encounters
    union
    select * from records_losing_an_encounter
    {%- for entity in ['procedures', 'observations', 'conditions'] %}
    union
    select
        source_system,
        source_location_id,
        patient_id
    from {{ ref('stg_emr__' ~ entity) }}
    where load_id > (select watermark.load_id from watermark)
    union
    select
        event_rows.source_system,
        event_rows.source_location_id,
        event_rows.patient_id
    from {{ ref('stg_emr__' ~ entity) }} as event_rows
    inner join new_encounters
        on
            event_rows.source_system = new_encounters.source_system
            and event_rows.source_location_id = new_encounters.source_location_id
            and event_rows.encounter_id = new_encounters.encounter_id
    {%- endfor %}
),
{%- endif %}

patients as (
    select * from {{ ref('stg_emr__patients') }}
    {%- if is_incremental() %}
        where (source_system, source_location_id, patient_id) in (select * from touched_records)
    {%- endif %}
),

encounters as (
    select * from {{ ref('stg_emr__encounters') }}
    {%- if is_incremental() %}
        where (source_system, source_location_id, patient_id) in (select * from touched_records)
    {%- endif %}
),

procedures as (
    select * from {{ ref('stg_emr__procedures') }}
    {%- if is_incremental() %}
        where (source_system, source_location_id, patient_id) in (select * from touched_records)
    {%- endif %}
),

observations as (
    select * from {{ ref('stg_emr__observations') }}
    {%- if is_incremental() %}
        where (source_system, source_location_id, patient_id) in (select * from touched_records)
    {%- endif %}
),

conditions as (
    select * from {{ ref('stg_emr__conditions') }}
    {%- if is_incremental() %}
        where (source_system, source_location_id, patient_id) in (select * from touched_records)
    {%- endif %}
),

-- Every staged encounter, touched or not: an event may name another record's encounter.
encounter_locations as (
    select
        source_system,
        source_location_id,
        encounter_id,
        location_id
    from {{ ref('stg_emr__encounters') }}
),

visit_events as (
    select
        encounters.encounter_key as event_id,
        'visit' as event_kind,
        encounters.source_system,
        encounters.source_location_id,
        encounters.patient_id,
        cast(encounters.encounter_date as date) as event_date,
        cast(null as date) as active_until,
        encounters.visit_type_system as code_system,
        encounters.visit_type_code as code,
        cast(null as numeric) as value_numeric,
        encounters.location_id,
        encounters.load_id
    from encounters
    where encounters.visit_type_code is not null
),

procedure_events as (
    select
        procedures.procedure_key as event_id,
        'procedure' as event_kind,
        procedures.source_system,
        procedures.source_location_id,
        procedures.patient_id,
        cast(procedures.performed_at as date) as event_date,
        cast(null as date) as active_until,
        procedures.code_system,
        procedures.code,
        cast(null as numeric) as value_numeric,
        encounter_locations.location_id,
        procedures.load_id
    from procedures
    left join encounter_locations
        on
            procedures.source_system = encounter_locations.source_system
            and procedures.source_location_id = encounter_locations.source_location_id
            and procedures.encounter_id = encounter_locations.encounter_id
),

observation_events as (
    select
        observations.observation_key as event_id,
        'observation' as event_kind,
        observations.source_system,
        observations.source_location_id,
        observations.patient_id,
        cast(observations.observed_at as date) as event_date,
        cast(null as date) as active_until,
        observations.code_system,
        observations.code,
        cast(observations.value_numeric as numeric) as value_numeric,
        encounter_locations.location_id,
        observations.load_id
    from observations
    left join encounter_locations
        on
            observations.source_system = encounter_locations.source_system
            and observations.source_location_id = encounter_locations.source_location_id
            and observations.encounter_id = encounter_locations.encounter_id
),

condition_events as (
    select
        conditions.condition_key as event_id,
        'condition' as event_kind,
        conditions.source_system,
        conditions.source_location_id,
        conditions.patient_id,
        cast(conditions.onset_date as date) as event_date,
        cast(conditions.resolved_date as date) as active_until,
        conditions.code_system,
        conditions.code,
        cast(null as numeric) as value_numeric,
        encounter_locations.location_id,
        conditions.load_id
    from conditions
    left join encounter_locations
        on
            conditions.source_system = encounter_locations.source_system
            and conditions.source_location_id = encounter_locations.source_location_id
            and conditions.encounter_id = encounter_locations.encounter_id
),

all_events as (
    select * from visit_events
    union all
    select * from procedure_events
    union all
    select * from observation_events
    union all
    select * from condition_events
),

final as (
    select
        all_events.event_id,
        all_events.event_kind,
        patients.patient_key,
        all_events.event_date,
        all_events.active_until,
        all_events.code_system,
        all_events.code,
        case
            when upper(all_events.code_system) in ('CPT', 'HCPCS', 'CDT') then 'HCPCS'
            when upper(all_events.code_system) in ('SNOMED', 'SNOMEDCT', 'SNOMED-CT', 'SCT') then 'SNOMED'
            when upper(all_events.code_system) in ('ICD10CM', 'ICD10', 'ICD-10-CM') then 'ICD10CM'
            else upper(all_events.code_system)
        end as code_system_key,
        upper(replace(trim(all_events.code), '.', '')) as code_key,
        all_events.value_numeric,
        coalesce(all_events.location_id, patients.location_id) as location_id,
        all_events.source_system,
        all_events.load_id,
        {{ build_started_at() }} as built_at
    from all_events
    inner join patients
        on
            all_events.source_system = patients.source_system
            and all_events.source_location_id = patients.source_location_id
            and all_events.patient_id = patients.patient_id
)

select * from final
