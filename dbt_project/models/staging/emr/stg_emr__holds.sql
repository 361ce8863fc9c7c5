{{ config(unique_key='hold_key') }}
with current_rows as (
    {{ current_extract_rows('holds', ['patient_id', 'hold_type', 'start_date'], key_name='hold_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'hold_type', 'start_date']) }} as hold_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        hold_type,
        start_date,
        end_date,
        reason,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
