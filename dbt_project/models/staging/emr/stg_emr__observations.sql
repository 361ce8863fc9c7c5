{{ config(unique_key='observation_key') }}
with current_rows as (
    {{ current_extract_rows('observations', ['patient_id', 'code', 'observed_at'], key_name='observation_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'code', 'observed_at']) }} as observation_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        code,
        code_system,
        observed_at,
        value_numeric,
        value_text,
        unit,
        encounter_id,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
