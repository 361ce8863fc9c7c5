-- Lift in booked rate that outreach brings, per rule and for all rules
-- together: people randomly held out (recorded, never contacted) against people
-- in the contacted arm, each credited with a booking made in the window after
-- the day they were assigned (intention to treat). The 95% confidence interval
-- is the normal approximation for a difference of two proportions:
--   lift = p_contacted - p_holdout
--   se   = sqrt(p_c (1 - p_c) / n_c + p_h (1 - p_h) / n_h)
--   ci   = lift -/+ 1.96 se
-- Empty when either arm has nobody, or when neither rate varies (every person
-- in both arms booked, or nobody did). The normal approximation needs enough
-- bookings and non-bookings in each arm: normal_approximation_ok says whether
-- each arm has at least 5 of both; read the interval with the counts otherwise.
with holdout_outcomes as (
    select * from {{ ref('int_holdout_outcomes') }}
),

per_rule as (
    select
        rule_id,
        arm,
        is_booked,
        is_touched,
        is_window_complete
    from holdout_outcomes
    union all
    select
        'all_rules' as rule_id,
        arm,
        is_booked,
        is_touched,
        is_window_complete
    from holdout_outcomes
),

arms as (
    select
        rule_id,
        sum(case when arm = 'holdout' then 1 else 0 end) as holdout_n,
        sum(case when arm = 'holdout' and is_booked then 1 else 0 end) as holdout_booked,
        sum(case when arm = 'contacted' then 1 else 0 end) as contacted_n,
        sum(case when arm = 'contacted' and is_booked then 1 else 0 end) as contacted_booked,
        sum(case when arm = 'contacted' and is_touched then 1 else 0 end) as contacted_touched_n,
        sum(case when not is_window_complete then 1 else 0 end) as assignments_in_open_window
    from per_rule
    group by rule_id
),

rates as (
    select
        *,
        cast(holdout_booked as {{ dbt.type_float() }}) / nullif(holdout_n, 0) as p_holdout,
        cast(contacted_booked as {{ dbt.type_float() }}) / nullif(contacted_n, 0) as p_contacted
    from arms
),

lift as (
    select
        *,
        p_contacted - p_holdout as absolute_lift,
        nullif(
            sqrt(p_contacted * (1 - p_contacted) / contacted_n + p_holdout * (1 - p_holdout) / holdout_n),
            0
        ) as lift_se
    from rates
),

final as (
    select
        rule_id,
        holdout_n,
        holdout_booked,
        round(cast(p_holdout as numeric), 4) as holdout_booked_rate,
        contacted_n,
        contacted_booked,
        round(cast(p_contacted as numeric), 4) as contacted_booked_rate,
        contacted_touched_n,
        assignments_in_open_window,
        round(cast(absolute_lift as numeric), 4) as absolute_lift,
        round(cast(absolute_lift / nullif(p_holdout, 0) as numeric), 4) as relative_lift,
        round(cast(lift_se as numeric), 4) as lift_standard_error,
        round(cast(absolute_lift - 1.96 * lift_se as numeric), 4) as lift_ci95_low,
        round(cast(absolute_lift + 1.96 * lift_se as numeric), 4) as lift_ci95_high,
        coalesce(absolute_lift - 1.96 * lift_se > 0 or absolute_lift + 1.96 * lift_se < 0, false)
            as is_significant,
        (
            least(holdout_booked, holdout_n - holdout_booked) >= 5
            and least(contacted_booked, contacted_n - contacted_booked) >= 5
        ) as normal_approximation_ok,
        {{ as_of_date() }} as as_of
    from lift
)

select * from final
