{{ config(unique_key='procedure_key') }}
with current_rows as (
    {{ current_extract_rows('procedures', ['patient_id', 'code', 'performed_at'], key_name='procedure_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'code', 'performed_at']) }} as procedure_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        code,
        code_system,
        performed_at,
        encounter_id,
        description,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
