-- The identity map: one row per source patient record (source system, source location,
-- source patient id) with the person it belongs to and why.
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

final as (
    select
        source_system,
        source_location_id,
        patient_id,
        patient_key,
        person_id,
        match_rule,
        match_score,
        matched_patient_key,
        match_evidence,
        count(*) over (partition by person_id) as person_record_count
    from identified
)

select * from final
