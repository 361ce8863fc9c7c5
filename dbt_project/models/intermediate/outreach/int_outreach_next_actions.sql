-- For every person with an open care gap: the next best action (the open gap
-- with the highest priority, then the most overdue) and the other open gaps.
with care_gaps as (
    select * from {{ ref('care_gaps') }}
),

persons as (
    select * from {{ ref('persons') }}
),

blockers as (
    select * from {{ ref('int_person_contact_blockers') }}
),

segments as (
    select * from {{ ref('outreach_segments') }}
),

-- Only the columns read below: the ranking sorts two million open gaps at 1M patients.
open_gaps as (
    select
        person_id,
        rule_id,
        reason,
        priority,
        due_date,
        days_overdue,
        location_id,
        row_number() over (
            partition by person_id
            order by priority asc, days_overdue desc nulls last, rule_id asc
        ) as action_rank
    from care_gaps
    where status = 'open'
),

other_open_rules as (
    select
        person_id,
        string_agg(rule_id, ',' order by action_rank) as other_open_rules
    from open_gaps
    where action_rank > 1
    group by person_id
),

next_actions as (
    select
        open_gaps.person_id,
        open_gaps.rule_id,
        open_gaps.reason,
        open_gaps.priority,
        open_gaps.due_date,
        open_gaps.days_overdue,
        coalesce(open_gaps.location_id, persons.home_location_id) as location_id,
        persons.household_id,
        persons.timezone,
        persons.language,
        other_open_rules.other_open_rules,
        case
            when blockers.last_visit_date is null then 'stalled_after_inquiry'
            else coalesce(segments.segment, 'lapsed_preventive')
        end as segment
    from open_gaps
    inner join persons on open_gaps.person_id = persons.person_id
    inner join blockers on open_gaps.person_id = blockers.person_id
    left join other_open_rules on open_gaps.person_id = other_open_rules.person_id
    left join segments on open_gaps.rule_id = segments.rule_id
    where open_gaps.action_rank = 1
)

select * from next_actions
