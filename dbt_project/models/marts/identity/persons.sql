-- One row per person: the contact and demographic facts outreach uses, taken
-- from the person's most recently extracted patient record.
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

patients as (
    select * from {{ ref('stg_emr__patients') }}
),

locations as (
    select * from {{ ref('stg_emr__locations') }}
),

ranked as (
    select
        identified.person_id,
        patients.*,
        row_number() over (
            partition by identified.person_id
            order by patients.extract_date desc, patients.patient_key asc
        ) as record_rank
    from identified
    inner join patients on identified.patient_key = patients.patient_key
),

final as (
    select
        ranked.person_id,
        ranked.location_id as home_location_id,
        coalesce(locations.timezone, 'UTC') as timezone,
        ranked.birth_date,
        ranked.sex,
        coalesce(nullif(lower(split_part(ranked.language, '-', 1)), ''), 'en') as language,
        ranked.phone_e164,
        coalesce(ranked.phone_is_valid, false) as phone_is_valid,
        ranked.email,
        coalesce(ranked.email_is_valid, false) as email_is_valid,
        coalesce(ranked.deceased, false) or ranked.deceased_date is not null as is_deceased,
        ranked.deceased_date,
        coalesce(ranked.household_key, ranked.person_id) as household_id
    from ranked
    left join locations
        on
            ranked.location_id = locations.location_id
            and ranked.source_system = locations.source_system
    where ranked.record_rank = 1
)

select * from final
