-- Completed visits of every person: encounters, and appointments marked completed
-- (a practice-management extract may carry one without the other). A visit is
-- one person at one location on one day, however many records describe it.
with patients as (
    select * from {{ ref('int_patients_mapped') }}
),

encounters as (
    select * from {{ ref('stg_emr__encounters') }}
),

appointments as (
    select * from {{ ref('stg_emr__appointments') }}
),

locations as (
    select * from {{ ref('int_locations_classified') }}
),

encounter_visits as (
    select
        source_system,
        source_location_id,
        patient_id,
        location_id,
        cast(encounter_date as date) as visit_date,
        1 as from_encounter
    from encounters
),

appointment_visits as (
    select
        source_system,
        source_location_id,
        patient_id,
        location_id,
        cast(scheduled_at as date) as visit_date,
        0 as from_encounter
    from appointments
    where status = 'completed'
),

source_visits as (
    select * from encounter_visits
    union all
    select * from appointment_visits
),

final as (
    select
        patients.person_id,
        source_visits.visit_date,
        source_visits.source_system,
        source_visits.location_id,
        coalesce(locations.practice_type, 'medical') as practice_type,
        max(source_visits.from_encounter) = 1 as has_encounter
    from source_visits
    inner join patients
        on
            source_visits.source_system = patients.source_system
            and source_visits.source_location_id = patients.source_location_id
            and source_visits.patient_id = patients.patient_id
    left join locations
        on
            source_visits.source_system = locations.source_system
            and source_visits.location_id = locations.location_id
    where source_visits.visit_date is not null
    group by
        patients.person_id,
        source_visits.visit_date,
        source_visits.source_system,
        source_visits.location_id,
        coalesce(locations.practice_type, 'medical')
)

select * from final
