-- Staff call outcomes; the free-text note is left behind (it may name the patient).
with source as (
    select * from {{ source('ops_outreach', 'call_list') }}
),

renamed as (
    select
        outreach_key,
        location_id,
        person_id,
        rule_id,
        as_of as call_list_as_of,
        outcome as call_outcome,
        outcome_at as call_outcome_at
    from source
)

select * from renamed
