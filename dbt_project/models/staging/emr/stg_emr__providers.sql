{{ config(unique_key='provider_key') }}
with current_rows as (
    {{ current_extract_rows('providers', ['provider_id'], key_name='provider_key') }}
),

renamed as (
    select
        {{ source_key(['provider_id']) }} as provider_key,
        source_system,
        location_id_loaded as source_location_id,
        provider_id,
        name,
        specialty,
        coalesce(location_id, location_id_loaded) as location_id,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
