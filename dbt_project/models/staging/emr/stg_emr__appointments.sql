{{ config(unique_key='appointment_key') }}
with current_rows as (
    {{ current_extract_rows('appointments', ['appointment_id'], key_name='appointment_key') }}
),

renamed as (
    select
        {{ source_key(['appointment_id']) }} as appointment_key,
        source_system,
        location_id_loaded as source_location_id,
        appointment_id,
        patient_id,
        status,
        scheduled_at,
        appointment_type,
        provider_id,
        coalesce(location_id, location_id_loaded) as location_id,
        created_at,
        cancelled_at,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
