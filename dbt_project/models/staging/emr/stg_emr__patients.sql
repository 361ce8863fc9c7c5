{{ config(unique_key='patient_key') }}
with current_rows as (
    {{ current_extract_rows('patients', ['patient_id'], key_name='patient_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id']) }} as patient_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        first_name,
        last_name,
        birth_date,
        sex,
        language,
        phone as phone_as_entered,
        address_line,
        city,
        state,
        postal_code,
        deceased,
        deceased_date,
        household_key,
        guarantor_id,
        coalesce(home_location_id, location_id_loaded) as location_id,
        phone_e164,
        phone_is_valid,
        email_normalised as email,
        email_is_valid,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
