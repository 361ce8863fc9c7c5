-- The bridge from source patient records to people: every staged patient record
-- with the person identity matching assigned it (through person_sources.patient_key).
with patients as (
    select * from {{ ref('stg_emr__patients') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

final as (
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
)

select * from final
