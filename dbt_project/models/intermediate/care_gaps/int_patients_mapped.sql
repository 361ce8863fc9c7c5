{{
    config(
        materialized='incremental',
        unique_key='patient_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        post_hook=[
            "{{ patients_mapped_forget_records_gone(this) }}",
            "create index if not exists int_patients_mapped_record_idx on {{ this }} (patient_key)",
        ],
    )
}}

-- The bridge from source patient records to people: every staged patient record
-- with the person identity matching assigned it (through person_sources.patient_key).
-- Incremental: a night writes only the records that are new or whose row changed (another
-- person, another home location), so the rows it wrote (built_at) say which records moved:
-- int_clinical_events_coded re-derives those. A changed row names the person the record
-- belonged to before (previous_person_id): int_person_facts derives that person again too.
-- A record staging no longer holds (a re-delivered file) leaves in the post-hook.
with patients as (
    select * from {{ ref('stg_emr__patients') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

mapped as (
    select
        patients.patient_key,
        patients.source_system,
        patients.source_location_id,
        patients.patient_id,
        patients.location_id,
        person_sources.person_id
    from patients
    inner join person_sources
        on patients.patient_key = person_sources.patient_key
),

final as (
    select
        mapped.*,
        {%- if is_incremental() %}
            held.person_id as previous_person_id,
        {%- else %}
            cast(null as {{ dbt.type_string() }}) as previous_person_id,
        {%- endif %}
        {{ build_started_at() }} as built_at
    from mapped
    {%- if is_incremental() %}
        left join {{ this }} as held
            on mapped.patient_key = held.patient_key
        where
            held.patient_key is null
            or (mapped.source_system, mapped.source_location_id, mapped.patient_id, mapped.location_id, mapped.person_id)
            is distinct from (held.source_system, held.source_location_id, held.patient_id, held.location_id, held.person_id)
    {%- endif %}
)

select * from final
