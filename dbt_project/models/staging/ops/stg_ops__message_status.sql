with source as (
    select * from {{ source('ops_outreach', 'message_status') }}
),

renamed as (
    select
        outreach_key,
        provider,
        provider_message_id,
        status as message_status,
        status_rank,
        error_code,
        occurred_at,
        updated_at
    from source
)

select * from renamed
