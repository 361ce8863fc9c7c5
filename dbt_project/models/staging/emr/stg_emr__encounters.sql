{{ config(unique_key='encounter_key') }}
with current_rows as (
    {{ current_extract_rows('encounters', ['encounter_id'], key_name='encounter_key') }}
),

renamed as (
    select
        {{ source_key(['encounter_id']) }} as encounter_key,
        source_system,
        location_id_loaded as source_location_id,
        encounter_id,
        patient_id,
        encounter_date,
        visit_type_code,
        visit_type_system,
        encounter_class,
        description,
        provider_id,
        coalesce(location_id, location_id_loaded) as location_id,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
