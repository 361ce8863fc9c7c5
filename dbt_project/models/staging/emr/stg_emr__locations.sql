{{ config(unique_key='location_key') }}
with current_rows as (
    {{ current_extract_rows('locations', ['location_id'], key_name='location_key') }}
),

renamed as (
    select
        {{ source_key(['location_id']) }} as location_key,
        source_system,
        location_id_loaded as source_location_id,
        location_id,
        name,
        timezone,
        phone,
        address_line,
        city,
        state,
        postal_code,
        booking_url,
        phone_e164,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
