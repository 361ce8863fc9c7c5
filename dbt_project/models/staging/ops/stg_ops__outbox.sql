with source as (
    select * from {{ source('ops_outreach', 'outbox') }}
),

renamed as (
    select
        outreach_key,
        batch_id,
        episode_id,
        touch_number,
        person_id,
        household_id,
        rule_id,
        location_id,
        channel,
        language,
        state as outbox_state,
        provider,
        provider_message_id,
        error_code,
        cancel_reason,
        send_attempts,
        created_at,
        updated_at
    from source
)

select * from renamed
