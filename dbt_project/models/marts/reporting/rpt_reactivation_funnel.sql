{%- set suppression_reasons = suppression_reason_codes() -%}
{%- set decisions = ['booked', 'declined', 'not_now', 'unreachable', 'opted_out', 'closed_without_response'] -%}

-- The reactivation funnel per location, rule, segment, channel and ISO week.
-- Two halves share the grain:
--   eligibility (int_eligibility_weekly, counted from the nightly snapshots): each
--     person counted once per rule and week, under their best status that week (a
--     candidate on any night, else suppressed with the reason of their latest night,
--     else waiting behind a higher-priority gap), at that night's location, segment
--     and preferred channel ('none' when no channel is usable); so eligible =
--     candidates + suppressed + waiting, and the suppressed_* columns add up to
--     suppressed.
--   contact (from episode outcomes): episodes counted in the week of their first
--     touch, under its channel; delivered / replied / booked / showed / decided
--     are what has become of those episodes so far (a cohort view).
with eligibility_weekly as (
    select * from {{ ref('int_eligibility_weekly') }}
    where week_start <= {{ as_of_date() }}
),

episode_outcomes as (
    select * from {{ ref('int_episode_outcomes') }}
),

eligibility_counts as (
    select
        week_start,
        location_id,
        rule_id,
        segment,
        channel,
        eligible,
        candidates,
        suppressed,
        {%- for reason in suppression_reasons %}
            suppressed_{{ reason }},
        {%- endfor %}
        waiting_other_gap,
        0 as contacted,
        0 as delivered,
        0 as replied,
        0 as booked,
        0 as showed,
        0 as no_shows,
        0 as decided,
        {%- for decision in decisions %}
            0 as decided_{{ decision }},
        {%- endfor %}
        0 as touches_made,
        0 as touches_undeliverable
    from eligibility_weekly
),

contact_counts as (
    select
        cast({{ dbt.date_trunc('week', 'first_touch_on') }} as date) as week_start,
        location_id,
        rule_id,
        segment,
        first_touch_channel as channel,
        0 as eligible,
        0 as candidates,
        0 as suppressed,
        {%- for reason in suppression_reasons %}
            0 as suppressed_{{ reason }},
        {%- endfor %}
        0 as waiting_other_gap,
        {{ episode_outcome_counts() }},
        {%- for decision in decisions %}
            sum(case when decision = '{{ decision }}' then 1 else 0 end) as decided_{{ decision }},
        {%- endfor %}
        sum(touches_made) as touches_made,
        sum(touches_undeliverable) as touches_undeliverable
    from episode_outcomes
    where is_contacted
    group by
        cast({{ dbt.date_trunc('week', 'first_touch_on') }} as date),
        location_id,
        rule_id,
        segment,
        first_touch_channel
),

unioned as (
    select * from eligibility_counts
    union all
    select * from contact_counts
),

summed as (
    select
        week_start,
        location_id,
        rule_id,
        segment,
        channel,
        sum(eligible) as eligible,
        sum(candidates) as candidates,
        sum(suppressed) as suppressed,
        {%- for reason in suppression_reasons %}
            sum(suppressed_{{ reason }}) as suppressed_{{ reason }},
        {%- endfor %}
        sum(waiting_other_gap) as waiting_other_gap,
        sum(contacted) as contacted,
        sum(delivered) as delivered,
        sum(replied) as replied,
        sum(booked) as booked,
        sum(showed) as showed,
        sum(no_shows) as no_shows,
        sum(decided) as decided,
        {%- for decision in decisions %}
            sum(decided_{{ decision }}) as decided_{{ decision }},
        {%- endfor %}
        sum(touches_made) as touches_made,
        sum(touches_undeliverable) as touches_undeliverable
    from unioned
    group by
        week_start,
        location_id,
        rule_id,
        segment,
        channel
),

final as (
    select
        week_start,
        to_char(week_start, 'IYYY-"W"IW') as iso_week,
        location_id,
        rule_id,
        segment,
        channel,
        eligible,
        candidates,
        suppressed,
        {%- for reason in suppression_reasons %}
            suppressed_{{ reason }},
        {%- endfor %}
        waiting_other_gap,
        contacted,
        delivered,
        replied,
        booked,
        showed,
        no_shows,
        decided,
        {%- for decision in decisions %}
            decided_{{ decision }},
        {%- endfor %}
        touches_made,
        touches_undeliverable,
        round(cast(replied as numeric) / nullif(delivered, 0), 4) as reply_rate,
        round(cast(booked as numeric) / nullif(contacted, 0), 4) as booked_rate,
        round(cast(showed as numeric) / nullif(showed + no_shows, 0), 4) as show_rate,
        round(cast(decided_unreachable as numeric) / nullif(contacted, 0), 4) as unreachable_rate,
        round(cast(suppressed_no_valid_contact as numeric) / nullif(eligible, 0), 4) as bad_data_rate,
        round(cast(decided_opted_out as numeric) / nullif(contacted, 0), 4) as opt_out_rate,
        {{ as_of_date() }} as as_of
    from summed
)

select * from final
