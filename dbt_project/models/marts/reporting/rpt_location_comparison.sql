-- Locations side by side, from the first run to the as-of date: tonight's
-- eligibility, what outreach did and what came of it, the rates, and each
-- location's booked rate against the network's (all locations together).
-- Outreach to date is counted from the episodes themselves, as the funnel counts its
-- contact half, so this report need not wait for the weekly eligibility counts.
with episode_outcomes as (
    select * from {{ ref('int_episode_outcomes') }}
    where is_contacted
),

eligibility as (
    select * from {{ ref('int_eligibility_daily') }}
    where as_of = {{ as_of_date() }}
),

-- Each person once per location (one hashed pass over tonight's two million rows at
-- 1M patients, where four distinct counts took four sorts), then counted.
tonight_people as (
    select
        coalesce(location_id, 'unknown') as location_id,
        person_id,
        bool_or(status = 'candidate') as is_candidate,
        bool_or(status = 'suppressed' and is_next_action) as is_suppressed,
        bool_or(reason = 'no_valid_contact' and is_next_action) as has_no_valid_contact
    from eligibility
    group by coalesce(location_id, 'unknown'), person_id
),

tonight as (
    select
        location_id,
        count(*) as eligible_people_tonight,
        sum(case when is_candidate then 1 else 0 end) as candidates_tonight,
        sum(case when is_suppressed then 1 else 0 end) as suppressed_tonight,
        sum(case when has_no_valid_contact then 1 else 0 end) as no_valid_contact_tonight
    from tonight_people
    group by location_id
),

to_date as (
    select
        location_id,
        {{ episode_outcome_counts() }},
        sum(case when decision = 'opted_out' then 1 else 0 end) as opted_out,
        sum(case when decision = 'unreachable' then 1 else 0 end) as unreachable,
        sum(touches_made) as touches_made,
        sum(touches_undeliverable) as touches_undeliverable
    from episode_outcomes
    group by location_id
),

locations as (
    select location_id from tonight
    union
    select location_id from to_date
),

network as (
    select cast(sum(booked) as numeric) / nullif(sum(contacted), 0) as network_booked_rate
    from to_date
),

joined as (
    select
        locations.location_id,
        coalesce(tonight.eligible_people_tonight, 0) as eligible_people_tonight,
        coalesce(tonight.candidates_tonight, 0) as candidates_tonight,
        coalesce(tonight.suppressed_tonight, 0) as suppressed_tonight,
        coalesce(tonight.no_valid_contact_tonight, 0) as no_valid_contact_tonight,
        coalesce(to_date.contacted, 0) as contacted,
        coalesce(to_date.delivered, 0) as delivered,
        coalesce(to_date.replied, 0) as replied,
        coalesce(to_date.booked, 0) as booked,
        coalesce(to_date.showed, 0) as showed,
        coalesce(to_date.no_shows, 0) as no_shows,
        coalesce(to_date.decided, 0) as decided,
        coalesce(to_date.opted_out, 0) as opted_out,
        coalesce(to_date.unreachable, 0) as unreachable,
        coalesce(to_date.touches_made, 0) as touches_made,
        coalesce(to_date.touches_undeliverable, 0) as touches_undeliverable,
        network.network_booked_rate
    from locations
    cross join network
    left join tonight on locations.location_id = tonight.location_id
    left join to_date on locations.location_id = to_date.location_id
),

final as (
    select
        location_id,
        eligible_people_tonight,
        candidates_tonight,
        suppressed_tonight,
        contacted,
        delivered,
        replied,
        booked,
        showed,
        no_shows,
        decided,
        opted_out,
        unreachable,
        round(cast(delivered as numeric) / nullif(contacted, 0), 4) as delivery_rate,
        round(cast(replied as numeric) / nullif(delivered, 0), 4) as reply_rate,
        round(cast(booked as numeric) / nullif(contacted, 0), 4) as booked_rate,
        round(cast(showed as numeric) / nullif(showed + no_shows, 0), 4) as show_rate,
        round(cast(unreachable as numeric) / nullif(contacted, 0), 4) as unreachable_rate,
        round(cast(touches_undeliverable as numeric) / nullif(touches_made, 0), 4) as undeliverable_touch_rate,
        round(cast(no_valid_contact_tonight as numeric) / nullif(eligible_people_tonight, 0), 4) as bad_data_rate,
        round(cast(opted_out as numeric) / nullif(contacted, 0), 4) as opt_out_rate,
        round(network_booked_rate, 4) as network_booked_rate,
        round(cast(booked as numeric) / nullif(contacted, 0) - network_booked_rate, 4) as booked_rate_vs_network,
        case
            when contacted > 0
                then rank() over (
                    order by case when contacted > 0 then cast(booked as numeric) / contacted end desc nulls last
                )
        end as booked_rate_rank,
        {{ as_of_date() }} as as_of
    from joined
)

select * from final
