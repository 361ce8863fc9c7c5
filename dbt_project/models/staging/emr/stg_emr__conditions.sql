{{ config(unique_key='condition_key') }}
with current_rows as (
    {{ current_extract_rows('conditions', ['patient_id', 'code', 'onset_date'], key_name='condition_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'code', 'onset_date']) }} as condition_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        code,
        code_system,
        onset_date,
        resolved_date,
        encounter_id,
        description,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
