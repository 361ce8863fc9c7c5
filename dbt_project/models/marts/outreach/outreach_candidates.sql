with next_actions as (
    select * from {{ ref('int_outreach_next_actions') }}
),

contactability as (
    select * from {{ ref('int_person_contactability') }}
),

suppression_reasons as (
    select * from {{ ref('int_outreach_suppression_reasons') }}
),

suppressed_people as (
    select distinct person_id from suppression_reasons
),

final as (
    select
        next_actions.person_id,
        next_actions.household_id,
        next_actions.location_id,
        next_actions.rule_id,
        next_actions.reason,
        next_actions.other_open_rules,
        next_actions.segment,
        round(
            (10 - least(next_actions.priority, 9)) * 10
            + least(greatest(coalesce(next_actions.days_overdue, 0), 0), 365) * 20.0 / 365,
            2
        ) as priority_score,
        contactability.preferred_channel,
        next_actions.language,
        contactability.contactable_channels,
        next_actions.timezone,
        next_actions.due_date,
        next_actions.days_overdue,
        {{ as_of_date() }} as as_of
    from next_actions
    inner join contactability on next_actions.person_id = contactability.person_id
    left join suppressed_people on next_actions.person_id = suppressed_people.person_id
    where suppressed_people.person_id is null
)

select * from final
