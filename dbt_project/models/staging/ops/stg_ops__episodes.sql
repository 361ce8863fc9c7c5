with source as (
    select * from {{ source('ops_outreach', 'episodes') }}
),

renamed as (
    select
        episode_id,
        person_id,
        household_id,
        rule_id,
        location_id,
        cadence_id,
        started_on,
        status as episode_status,
        touches_planned,
        last_touch_on,
        ended_on,
        end_reason
    from source
)

select * from renamed
