-- One row per person: the profile chosen across the person's records
-- (int_person_profiles) and the household for household-level contact caps.
with profiles as (
    select * from {{ ref('int_person_profiles') }}
),

households as (
    select * from {{ ref('int_households') }}
),

final as (
    select
        profiles.person_id,
        profiles.home_location_id,
        profiles.timezone,
        profiles.birth_date,
        profiles.sex,
        profiles.language,
        profiles.phone_e164,
        profiles.phone_is_valid,
        profiles.email,
        profiles.email_is_valid,
        profiles.is_deceased,
        profiles.deceased_date,
        households.household_id,
        households.household_size,
        profiles.patient_record_count,
        profiles.source_location_count
    from profiles
    inner join households
        on profiles.person_id = households.person_id
)

select * from final
