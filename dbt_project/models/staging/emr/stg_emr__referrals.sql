{{ config(unique_key='referral_key') }}
with current_rows as (
    {{ current_extract_rows('referrals', ['referral_id'], key_name='referral_key') }}
),

renamed as (
    select
        {{ source_key(['referral_id']) }} as referral_key,
        source_system,
        location_id_loaded as source_location_id,
        referral_id,
        patient_id,
        status,
        ordered_date,
        specialty,
        scheduled_date,
        completed_date,
        extra as source_extra,
        extract_date,
        load_id,
        {{ build_started_at() }} as built_at
    from current_rows
)

select * from renamed
