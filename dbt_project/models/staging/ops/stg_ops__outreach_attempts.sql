with source as (
    select * from {{ source('ops_outreach', 'outreach_attempts') }}
),

renamed as (
    select
        attempt_id,
        outreach_key,
        attempted_at,
        as_of as attempt_as_of,
        channel,
        rule_id,
        provider_message_id,
        status as attempt_status,
        error_code,
        next_step
    from source
)

select * from renamed
