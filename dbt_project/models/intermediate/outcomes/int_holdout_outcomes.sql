-- Both arms of the randomized holdout with the booking credited to each
-- assignment: a booking in the window after the assignment day, counted the
-- same way for both arms (intention to treat: a contacted-arm person counts
-- whether or not a touch actually reached them).
with holdout as (
    select * from {{ ref('stg_ops__holdout') }}
),

bookings_attributed as (
    select * from {{ ref('int_bookings_attributed') }}
    where anchor_type = 'holdout_assignment'
),

touches as (
    select * from {{ ref('int_touches_classified') }}
),

touched as (
    select distinct
        person_id,
        rule_id,
        touch_on
    from touches
    where is_made
),

touched_assignments as (
    select distinct
        holdout.person_id,
        holdout.rule_id
    from holdout
    inner join touched
        on
            holdout.person_id = touched.person_id
            and holdout.rule_id = touched.rule_id
            and holdout.assigned_on <= touched.touch_on
),

final as (
    select
        holdout.person_id,
        holdout.rule_id,
        coalesce(holdout.location_id, 'unknown') as location_id,
        holdout.assigned_on,
        holdout.arm,
        touched_assignments.person_id is not null as is_touched,
        bookings_attributed.appointment_key is not null as is_booked,
        bookings_attributed.booked_on,
        bookings_attributed.appointment_outcome,
        cast({{ dbt.dateadd('day', var('booking_attribution_days', 30), 'holdout.assigned_on') }} as date)
        <= {{ as_of_date() }} as is_window_complete
    from holdout
    left join touched_assignments
        on
            holdout.person_id = touched_assignments.person_id
            and holdout.rule_id = touched_assignments.rule_id
    left join bookings_attributed
        on
            holdout.person_id = bookings_attributed.person_id
            and holdout.rule_id = bookings_attributed.rule_id
    where holdout.assigned_on <= {{ as_of_date() }}
)

select * from final
