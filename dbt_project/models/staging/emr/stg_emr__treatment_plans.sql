{{ config(unique_key='treatment_plan_key') }}
with current_rows as (
    {{ current_extract_rows('treatment_plans', ['plan_id'], key_name='treatment_plan_key') }}
),

renamed as (
    select
        {{ source_key(['plan_id']) }} as treatment_plan_key,
        source_system,
        location_id_loaded as source_location_id,
        plan_id,
        patient_id,
        status,
        presented_date,
        code,
        code_system,
        description,
        completed_date,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
