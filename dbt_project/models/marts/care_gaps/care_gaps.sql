-- One row per person per enabled care-gap rule whose population the person is in, with
-- the rule's status on the as-of date: the evaluations (int_care_gap_evaluations, where
-- the rules are applied) published for tonight. A person's evaluation stands until
-- something it rests on changes, and no status changes before its reevaluate_on date, so
-- only what the calendar moves every day is worked out here: days overdue and the date.
with evaluations as (
    select * from {{ ref('int_care_gap_evaluations') }}
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

final as (
    select
        evaluations.person_id,
        evaluations.rule_id,
        evaluations.status,
        evaluations.evidence_date,
        evaluations.evidence_value,
        evaluations.due_date,
        case
            when evaluations.status = 'open' and evaluations.due_date is not null
                then {{ dbt.datediff('evaluations.due_date', 'run_parameters.as_of_date', 'day') }}
        end as days_overdue,
        evaluations.exclusion_reason,
        evaluations.priority,
        evaluations.location_id,
        evaluations.reason,
        evaluations.cadence_id,
        run_parameters.as_of_date
    from evaluations
    cross join run_parameters
    where evaluations.rule_id is not null
)

select * from final
