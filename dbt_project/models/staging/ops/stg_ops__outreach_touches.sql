with source as (
    select * from {{ source('ops', 'outreach_touches') }}
),

renamed as (
    select
        outreach_key,
        person_id,
        household_id,
        rule_id,
        channel,
        touched_at,
        status
    from source
)

select * from renamed
