-- Replies, without their text (the webhook receiver never stores it here).
with source as (
    select * from {{ source('ops_outreach', 'inbound_messages') }}
),

renamed as (
    select
        id as inbound_message_id,
        provider,
        person_id,
        location_id,
        channel,
        keyword,
        keyword_match,
        received_at
    from source
)

select * from renamed
