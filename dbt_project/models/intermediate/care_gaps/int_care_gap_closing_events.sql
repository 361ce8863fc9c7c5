{#- Sorts every closing event (about 6M at 1M patients): 1 GB per sort keeps it in memory. -#}
{{ config(pre_hook="{% if target.type == 'postgres' %}set local work_mem = '1GB'{% endif %}") }}

-- The evidence interval rules close on, narrowed before care_gaps reads it: for each
-- person, rule and closing value set, the latest event of the value set on or before
-- the as-of date, with the value of the rule's latest valued closing event (the HbA1c
-- result that decides whether the 3- or 6-month interval applies). It needs only the
-- coded events, so it is built beside int_person_facts rather than inside care_gaps.
with coded_events as (
    select * from {{ ref('int_clinical_events_coded') }}
),

rule_value_sets as (
    select * from {{ ref('int_care_gap_rule_value_sets') }}
    where value_set_role = 'closing'
),

run_parameters as (
    select cast('{{ var("as_of") }}' as date) as as_of_date
),

closing_events_to_date as (
    select
        coded_events.person_id,
        rule_value_sets.rule_id,
        rule_value_sets.value_set_id,
        rule_value_sets.interval_months,
        rule_value_sets.min_age_at_event,
        coded_events.event_date,
        coded_events.value_numeric,
        coded_events.location_id
    from coded_events
    inner join rule_value_sets
        on coded_events.value_set_id = rule_value_sets.value_set_id
    cross join run_parameters
    where coded_events.event_date <= run_parameters.as_of_date
),

latest_values as (
    select
        person_id,
        rule_id,
        value_numeric as latest_value,
        row_number() over (
            partition by person_id, rule_id
            order by event_date desc, value_numeric desc
        ) as value_recency_rank
    from closing_events_to_date
    where value_numeric is not null
),

closing_events as (
    select
        *,
        row_number() over (
            partition by person_id, rule_id, value_set_id
            order by event_date desc, value_numeric desc nulls last, location_id asc
        ) as value_set_recency_rank
    from closing_events_to_date
),

final as (
    select
        closing_events.person_id,
        closing_events.rule_id,
        closing_events.value_set_id,
        closing_events.interval_months,
        closing_events.min_age_at_event,
        closing_events.event_date,
        closing_events.value_numeric,
        closing_events.location_id,
        latest_values.latest_value
    from closing_events
    left join latest_values
        on
            closing_events.person_id = latest_values.person_id
            and closing_events.rule_id = latest_values.rule_id
            and latest_values.value_recency_rank = 1
    where closing_events.value_set_recency_rank = 1
)

select * from final
