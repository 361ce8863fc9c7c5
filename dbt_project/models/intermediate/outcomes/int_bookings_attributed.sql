-- A booking is credited to an anchor (an episode's first touch, or a holdout
-- assignment) when the person booked on a day after the anchor day and at most
-- var('booking_attribution_days') (default 30) days after it: the touch goes
-- out after the night's extract, so a booking made on the anchor day itself was
-- already in that extract. The earliest such booking wins.
with anchors as (
    select * from {{ ref('int_attribution_anchors_unioned') }}
),

bookings as (
    select * from {{ ref('int_bookings_linked') }}
),

windows as (
    select
        *,
        cast({{ dbt.dateadd('day', var('booking_attribution_days', 30), 'anchor_on') }} as date) as window_ends_on
    from anchors
),

in_window as (
    select
        windows.anchor_type,
        windows.anchor_id,
        windows.person_id,
        windows.rule_id,
        windows.anchor_on,
        bookings.appointment_key,
        bookings.location_id as appointment_location_id,
        bookings.appointment_status,
        bookings.booked_on,
        bookings.scheduled_on,
        row_number() over (
            partition by windows.anchor_type, windows.anchor_id
            order by
                bookings.booked_on asc,
                bookings.scheduled_on asc,
                bookings.appointment_key asc
        ) as booking_rank
    from windows
    inner join bookings
        on
            windows.person_id = bookings.person_id
            and windows.anchor_on < bookings.booked_on
            and windows.window_ends_on >= bookings.booked_on
),

final as (
    select
        anchor_type,
        anchor_id,
        person_id,
        rule_id,
        anchor_on,
        appointment_key,
        appointment_location_id,
        appointment_status,
        booked_on,
        scheduled_on,
        {{ dbt.datediff('anchor_on', 'booked_on', 'day') }} as days_to_booking,  -- noqa: LT05
        case appointment_status
            when 'completed' then 'showed'
            when 'no_show' then 'no_show'
            else 'pending'
        end as appointment_outcome
    from in_window
    where booking_rank = 1
)

select * from final
