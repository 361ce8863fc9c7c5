{{ config(unique_key='recall_key') }}
with current_rows as (
    {{ current_extract_rows('recalls', ['patient_id', 'recall_type', 'due_date'], key_name='recall_key') }}
),

renamed as (
    select
        {{ source_key(['patient_id', 'recall_type', 'due_date']) }} as recall_key,
        source_system,
        location_id_loaded as source_location_id,
        patient_id,
        recall_type,
        due_date,
        recall_id,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
