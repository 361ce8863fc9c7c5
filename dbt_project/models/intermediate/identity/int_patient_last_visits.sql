-- When each source patient record was last seen: persons reads it to rank a person's
-- records by recency (the practice that saw the patient last holds the freshest
-- contact details). Aggregated on its own, in one pass over the staging view.
with encounters as (
    select * from {{ ref('stg_emr__encounters') }}
),

final as (
    select
        source_system,
        source_location_id,
        patient_id,
        max(encounter_date) as last_encounter_at,
        count(*) as encounter_count
    from encounters
    where patient_id is not null
    group by source_system, source_location_id, patient_id
)

select * from final
