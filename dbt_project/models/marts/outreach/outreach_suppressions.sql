with suppression_reasons as (
    select * from {{ ref('int_outreach_suppression_reasons') }}
),

final as (
    select
        person_id,
        rule_id,
        location_id,
        reason_code,
        detail,
        {{ as_of_date() }} as as_of
    from suppression_reasons
)

select * from final
