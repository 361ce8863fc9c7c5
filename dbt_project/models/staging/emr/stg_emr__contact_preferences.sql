{{ config(unique_key='contact_preference_key') }}
with current_rows as (
    {{ current_extract_rows(
        'contact_preferences', ['patient_id', 'channel', 'effective_date'], key_name='contact_preference_key'
    ) }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'channel', 'effective_date']) }} as contact_preference_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        channel,
        status,
        effective_date,
        source,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
