-- What became of each outreach episode: its touches, whether one was delivered,
-- whether the person replied, the booking credited to it (and whether they
-- showed), and the decision it ended in.
-- Decision, first match wins:
--   booked: a booking credited to the episode, or staff recorded "booked" on a call;
--   the episode's own end reason when it is a decision (declined, not_now,
--     opted_out, unreachable, closed_without_response, booked);
--   opted_out: the person opted out (any channel) after the first touch;
--   declined / not_now: a staff call outcome;
--   unreachable: the episode ended and no touch was delivered, at least one was
--     undeliverable (bounced, undelivered, failed, wrong number);
--   closed_without_response: the episode ended any other way (cadence finished,
--     gap closed without a credited booking);
--   empty while the episode is still open and nothing above has happened.
with episodes as (
    select * from {{ ref('stg_ops__episodes') }}
),

touches as (
    select * from {{ ref('int_touches_classified') }}
),

bookings_attributed as (
    select * from {{ ref('int_bookings_attributed') }}
    where anchor_type = 'episode'
),

replies as (
    select * from {{ ref('stg_ops__inbound_messages') }}
),

opt_outs as (
    select * from {{ ref('stg_ops__opt_outs') }}
),

eligibility as (
    select * from {{ ref('int_eligibility_daily') }}
),

touches_ranked as (
    select
        *,
        row_number() over (
            partition by episode_id
            order by touch_on asc, touch_number asc, outreach_key asc
        ) as made_rank
    from touches
    where is_made
),

first_touches as (
    select
        episode_id,
        touch_on as first_touch_on,
        touched_at as first_touched_at,
        channel as first_touch_channel
    from touches_ranked
    where made_rank = 1
),

made_channels as (
    select distinct
        episode_id,
        channel
    from touches
    where is_made
),

contacted_channels as (
    select
        episode_id,
        string_agg(channel, ',' order by channel) as contacted_channels
    from made_channels
    group by episode_id
),

touch_summaries as (
    select
        episode_id,
        count(*) as touches_planned,
        sum(case when is_made then 1 else 0 end) as touches_made,
        sum(case when is_delivered then 1 else 0 end) as touches_delivered,
        sum(case when is_undeliverable then 1 else 0 end) as touches_undeliverable,
        max(case when is_made then touch_on end) as last_touch_on,
        max(case when is_call_answered then 1 else 0 end) = 1 as call_answered,
        max(case when call_outcome = 'booked' then 1 else 0 end) = 1 as call_booked,
        max(case when call_outcome = 'declined' then 1 else 0 end) = 1 as call_declined,
        max(case when call_outcome = 'not_now' then 1 else 0 end) = 1 as call_not_now,
        max(case when call_outcome = 'wrong_number' then 1 else 0 end) = 1 as call_wrong_number
    from touches
    group by episode_id
),

episode_touches as (
    select
        episodes.episode_id,
        episodes.person_id,
        first_touches.first_touched_at,
        {{ dbt.dateadd('day', var('booking_attribution_days', 30), 'first_touches.first_touched_at') }}
            as window_ends_at
    from episodes
    inner join first_touches on episodes.episode_id = first_touches.episode_id
),

-- Replies and opt-outs carry clock time, so they are matched to the first
-- touch's clock time, within the same window as bookings.
episode_replies as (
    select
        episode_touches.episode_id,
        count(*) as replies,
        max(case when replies.keyword = 'stop' then 1 else 0 end) = 1 as replied_stop
    from episode_touches
    inner join replies
        on
            episode_touches.person_id = replies.person_id
            and episode_touches.first_touched_at <= replies.received_at
            and episode_touches.window_ends_at > replies.received_at
    group by episode_touches.episode_id
),

episode_opt_outs as (
    select
        episode_touches.episode_id,
        min(opt_outs.opt_out_source) as opt_out_source
    from episode_touches
    inner join opt_outs
        on
            episode_touches.person_id = opt_outs.person_id
            and opt_outs.status = 'opt_out'
            and episode_touches.first_touched_at <= opt_outs.recorded_at
            and episode_touches.window_ends_at > opt_outs.recorded_at
    group by episode_touches.episode_id
),

joined as (
    select
        episodes.episode_id,
        episodes.person_id,
        episodes.rule_id,
        coalesce(episodes.location_id, 'unknown') as location_id,
        coalesce(eligibility.segment, 'unknown') as segment,
        episodes.cadence_id,
        episodes.started_on,
        episodes.episode_status,
        episodes.ended_on,
        episodes.end_reason,
        first_touches.first_touch_on,
        first_touches.first_touched_at,
        first_touches.first_touch_channel,
        touch_summaries.last_touch_on,
        contacted_channels.contacted_channels,
        coalesce(touch_summaries.touches_planned, 0) as touches_planned,
        coalesce(touch_summaries.touches_made, 0) as touches_made,
        coalesce(touch_summaries.touches_delivered, 0) as touches_delivered,
        coalesce(touch_summaries.touches_undeliverable, 0) as touches_undeliverable,
        coalesce(episode_replies.replies, 0) as replies,
        coalesce(episode_replies.replied_stop, false) as replied_stop,
        coalesce(touch_summaries.call_answered, false) as call_answered,
        coalesce(touch_summaries.call_booked, false) as call_booked,
        coalesce(touch_summaries.call_declined, false) as call_declined,
        coalesce(touch_summaries.call_not_now, false) as call_not_now,
        episode_opt_outs.opt_out_source,
        bookings_attributed.appointment_key as booked_appointment_key,
        bookings_attributed.appointment_location_id as booked_location_id,
        bookings_attributed.booked_on,
        bookings_attributed.scheduled_on as booked_for,
        bookings_attributed.days_to_booking,
        bookings_attributed.appointment_outcome
    from episodes
    left join first_touches on episodes.episode_id = first_touches.episode_id
    left join touch_summaries on episodes.episode_id = touch_summaries.episode_id
    left join contacted_channels on episodes.episode_id = contacted_channels.episode_id
    left join episode_replies on episodes.episode_id = episode_replies.episode_id
    left join episode_opt_outs on episodes.episode_id = episode_opt_outs.episode_id
    left join bookings_attributed on episodes.episode_id = bookings_attributed.anchor_id
    left join eligibility
        on
            episodes.started_on = eligibility.as_of
            and episodes.person_id = eligibility.person_id
            and episodes.rule_id = eligibility.rule_id
    where episodes.started_on <= {{ as_of_date() }}
),

decided as (
    select
        *,
        case
            when booked_appointment_key is not null or call_booked then 'booked'
            when
                end_reason in ('booked', 'declined', 'not_now', 'opted_out', 'unreachable', 'closed_without_response')
                then end_reason
            when opt_out_source is not null or replied_stop then 'opted_out'
            when call_declined then 'declined'
            when call_not_now then 'not_now'
            when
                episode_status = 'ended' and touches_delivered = 0 and touches_undeliverable > 0
                then 'unreachable'
            when episode_status = 'ended' then 'closed_without_response'
        end as decision,
        case
            when booked_appointment_key is not null then 'credited_booking'
            when call_booked then 'call_outcome'
            when
                end_reason in ('booked', 'declined', 'not_now', 'opted_out', 'unreachable', 'closed_without_response')
                then 'episode_end'
            when opt_out_source is not null or replied_stop then 'opt_out'
            when call_declined or call_not_now then 'call_outcome'
            when episode_status = 'ended' then 'derived'
        end as decision_source
    from joined
),

final as (
    select
        episode_id,
        person_id,
        rule_id,
        location_id,
        segment,
        cadence_id,
        started_on,
        episode_status,
        ended_on,
        end_reason,
        first_touch_on,
        first_touched_at,
        first_touch_channel,
        last_touch_on,
        contacted_channels,
        touches_planned,
        touches_made,
        touches_delivered,
        touches_undeliverable,
        replies,
        replied_stop,
        call_answered,
        opt_out_source,
        booked_appointment_key,
        booked_location_id,
        booked_on,
        booked_for,
        days_to_booking,
        appointment_outcome,
        decision,
        decision_source,
        first_touch_on is not null as is_contacted,
        touches_delivered > 0 as is_delivered,
        (replies > 0 or call_answered) as is_replied,
        (booked_appointment_key is not null or call_booked) as is_booked,
        coalesce(appointment_outcome = 'showed', false) as is_showed,
        coalesce(appointment_outcome = 'no_show', false) as is_no_show,
        decision is not null as is_decided
    from decided
)

select * from final
