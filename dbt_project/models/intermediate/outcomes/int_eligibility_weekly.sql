{%- set suppression_reasons = suppression_reason_codes() -%}
{{
    config(
        materialized='incremental',
        unique_key='week_start',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
    )
}}

-- The eligibility half of the reactivation funnel, counted once per ISO week so that
-- the funnel never reads the nightly history again: each person counted once per rule
-- and week under their best status that week (a candidate on any night, else
-- suppressed with the reason of their latest night, else waiting behind a
-- higher-priority gap), at that night's location, segment and preferred channel.
-- Counts only the nights up to the as-of date.
-- Incremental: a night re-counts the week of its as-of date (the night it just wrote)
-- and any week whose nights on record differ from the nights it was counted from (a
-- night written by a run whose count did not follow, a re-run for an earlier date);
-- every other week is final. So a night reads at most a week of eligibility rows,
-- however long the history grows.
with recursive nights_on_record as (
    -- The distinct nights up to the as-of date, one index probe each (the history has
    -- an index on as_of): a night's rows are never scanned to learn that it exists.
    select min(as_of) as as_of
    from {{ ref('int_eligibility_daily') }}
    where as_of <= {{ as_of_date() }}
    union all
    select
        (
            select min(later.as_of)
            from {{ ref('int_eligibility_daily') }} as later
            where later.as_of > nights_on_record.as_of and later.as_of <= {{ as_of_date() }}
        ) as as_of
    from nights_on_record
    where nights_on_record.as_of is not null
),

weeks_on_record as (
    select
        cast({{ dbt.date_trunc('week', 'as_of') }} as date) as week_start,
        count(*) as nights_counted,
        max(as_of) as last_night_counted
    from nights_on_record
    where as_of is not null
    group by cast({{ dbt.date_trunc('week', 'as_of') }} as date)
),

weeks_to_count as (
    select weeks_on_record.*
    from weeks_on_record
    {%- if is_incremental() %}
        where
            weeks_on_record.week_start = cast({{ dbt.date_trunc('week', as_of_date()) }} as date)
            or not exists (
                select 1
                from {{ this }} as counted
                where
                    counted.week_start = weeks_on_record.week_start
                    and counted.nights_counted = weeks_on_record.nights_counted
                    and counted.last_night_counted = weeks_on_record.last_night_counted
            )
    {%- endif %}
),

-- Tonight's week is read with its bounds written into the query: the planner then
-- scans and sorts its nights in parallel (on a Sunday, seven nights of about two
-- million rows: 13 s instead of 19-21 s at 1M patients). Other weeks to re-count are rare
-- (a re-run, a night whose count did not follow) and go through the list above.
as_of_week_nights as (
    select
        cast({{ dbt.date_trunc('week', as_of_date()) }} as date) as week_start,
        as_of,
        person_id,
        rule_id,
        location_id,
        segment,
        preferred_channel,
        status,
        reason
    from {{ ref('int_eligibility_daily') }}
    where
        as_of >= cast({{ dbt.date_trunc('week', as_of_date()) }} as date)
        and as_of <= {{ as_of_date() }}
),

other_week_nights as (
    select
        weeks_to_count.week_start,
        nights.as_of,
        nights.person_id,
        nights.rule_id,
        nights.location_id,
        nights.segment,
        nights.preferred_channel,
        nights.status,
        nights.reason
    from weeks_to_count
    inner join {{ ref('int_eligibility_daily') }} as nights
        on
            weeks_to_count.week_start <= nights.as_of
            and cast({{ dbt.dateadd('day', 7, 'weeks_to_count.week_start') }} as date) > nights.as_of
            and nights.as_of <= {{ as_of_date() }}
    where weeks_to_count.week_start != cast({{ dbt.date_trunc('week', as_of_date()) }} as date)
),

-- Each week's nights rank apart (a week never spans both lists), so the as-of week's
-- sort stays on its own.
{%- set best_night_first %}
    partition by week_start, person_id, rule_id
    order by
        case status when 'candidate' then 1 when 'suppressed' then 2 else 3 end asc,
        as_of desc
{%- endset %}
person_weeks as (
    select
        *,
        row_number() over ({{ best_night_first }}) as status_rank
    from as_of_week_nights
    union all
    select
        *,
        row_number() over ({{ best_night_first }}) as status_rank
    from other_week_nights
),

counted as (
    select
        week_start,
        coalesce(location_id, 'unknown') as location_id,
        rule_id,
        segment,
        preferred_channel as channel,
        count(*) as eligible,
        sum(case when status = 'candidate' then 1 else 0 end) as candidates,
        sum(case when status = 'suppressed' then 1 else 0 end) as suppressed,
        {%- for reason in suppression_reasons %}
            sum(
                case when status = 'suppressed' and reason = '{{ reason }}' then 1 else 0 end
            ) as suppressed_{{ reason }},
        {%- endfor %}
        sum(case when status = 'eligible' then 1 else 0 end) as waiting_other_gap
    from person_weeks
    where status_rank = 1
    group by
        week_start,
        coalesce(location_id, 'unknown'),
        rule_id,
        segment,
        preferred_channel
),

final as (
    select
        counted.*,
        weeks_to_count.nights_counted,
        weeks_to_count.last_night_counted
    from counted
    inner join weeks_to_count on counted.week_start = weeks_to_count.week_start
)

select * from final
