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
        match_score
    from identified
)

select * from final
