-- Bookings per location and ISO week, from the week the pipeline first ran to
-- the as-of date: every booking in the extracts (by the week it was made, at the
-- appointment's location) and those credited to outreach, with how the credited
-- ones turned out. Every location in every week gets a row, zeros included.
with bookings as (
    select * from {{ ref('int_bookings_linked') }}
),

bookings_attributed as (
    select * from {{ ref('int_bookings_attributed') }}
    where anchor_type = 'episode'
),

eligibility_weekly as (
    select * from {{ ref('int_eligibility_weekly') }}
    where week_start <= {{ as_of_date() }}
),

episode_outcomes as (
    select * from {{ ref('int_episode_outcomes') }}
),

-- Every week from the first night the pipeline ran to the as-of date (up to 20 years).
week_numbers as (
    {{ dbt.generate_series(1044) }}
),

first_week as (
    select min(week_start) as week_start
    from eligibility_weekly
),

candidate_weeks as (
    select
        cast(
            {{ dbt.dateadd('day', '7 * (week_numbers.generated_number - 1)', 'first_week.week_start') }} as date
        ) as week_start
    from week_numbers
    cross join first_week
),

weeks as (
    select week_start from candidate_weeks
    where week_start <= {{ as_of_date() }}
),

locations as (
    select distinct location_id from eligibility_weekly
    union
    select distinct location_id from episode_outcomes
),

all_bookings as (
    select
        cast({{ dbt.date_trunc('week', 'booked_on') }} as date) as week_start,
        coalesce(location_id, 'unknown') as location_id,
        count(*) as bookings
    from bookings
    group by
        cast({{ dbt.date_trunc('week', 'booked_on') }} as date),
        coalesce(location_id, 'unknown')
),

-- One appointment can be credited to two episodes of one person (two rules):
-- it is one booking.
credited_appointments as (
    select distinct
        appointment_key,
        appointment_location_id,
        booked_on,
        appointment_outcome
    from bookings_attributed
),

credited_bookings as (
    select
        cast({{ dbt.date_trunc('week', 'booked_on') }} as date) as week_start,
        coalesce(appointment_location_id, 'unknown') as location_id,
        count(*) as bookings_from_outreach,
        sum(case when appointment_outcome = 'showed' then 1 else 0 end) as showed,
        sum(case when appointment_outcome = 'no_show' then 1 else 0 end) as no_shows,
        sum(case when appointment_outcome = 'pending' then 1 else 0 end) as pending
    from credited_appointments
    group by
        cast({{ dbt.date_trunc('week', 'booked_on') }} as date),
        coalesce(appointment_location_id, 'unknown')
),

spine as (
    select
        weeks.week_start,
        locations.location_id
    from weeks
    cross join locations
),

final as (
    select
        spine.week_start,
        to_char(spine.week_start, 'IYYY-"W"IW') as iso_week,
        spine.location_id,
        coalesce(all_bookings.bookings, 0) as bookings,
        coalesce(credited_bookings.bookings_from_outreach, 0) as bookings_from_outreach,
        coalesce(credited_bookings.showed, 0) as showed,
        coalesce(credited_bookings.no_shows, 0) as no_shows,
        coalesce(credited_bookings.pending, 0) as pending,
        round(
            cast(coalesce(credited_bookings.bookings_from_outreach, 0) as numeric) / nullif(all_bookings.bookings, 0),
            4
        ) as share_from_outreach,
        {{ as_of_date() }} as as_of
    from spine
    left join all_bookings
        on
            spine.week_start = all_bookings.week_start
            and spine.location_id = all_bookings.location_id
    left join credited_bookings
        on
            spine.week_start = credited_bookings.week_start
            and spine.location_id = credited_bookings.location_id
)

select * from final
