with source as (
    select * from {{ source('ops_outreach', 'holdout') }}
),

renamed as (
    select
        person_id,
        rule_id,
        location_id,
        assigned_on,
        arm
    from source
)

select * from renamed
