-- Every planned touch with what became of it. A touch is made when the provider
-- accepted it (for calls: when it was put on a staff call list). It is dated by
-- its batch's as-of date (the logical date it was planned for) and, for reply
-- matching, by the clock time of the accepted attempt (the clock replies carry).
-- Delivered: the provider reported delivery or a later engagement (an
-- unsubscribe or spam report also proves delivery); for calls, staff reached the
-- person or left a voicemail. Undeliverable: the send failed, the provider
-- bounced, dropped or could not deliver it, or staff found a wrong number.
with outbox as (
    select * from {{ ref('stg_ops__outbox') }}
),

batches as (
    select * from {{ ref('stg_ops__batches') }}
),

attempts as (
    select * from {{ ref('stg_ops__outreach_attempts') }}
),

message_status as (
    select * from {{ ref('stg_ops__message_status') }}
),

call_list as (
    select * from {{ ref('stg_ops__call_list') }}
),

accepted_attempts as (
    select
        outreach_key,
        min(attempted_at) as touched_at
    from attempts
    where attempt_status = 'accepted'
    group by outreach_key
),

joined as (
    select
        outbox.outreach_key,
        outbox.episode_id,
        outbox.touch_number,
        outbox.person_id,
        outbox.rule_id,
        outbox.location_id,
        outbox.channel,
        outbox.outbox_state,
        batches.batch_as_of as touch_on,
        accepted_attempts.touched_at,
        message_status.message_status,
        call_list.call_outcome,
        outbox.outbox_state = 'accepted' as is_made
    from outbox
    inner join batches on outbox.batch_id = batches.batch_id
    left join accepted_attempts on outbox.outreach_key = accepted_attempts.outreach_key
    left join message_status on outbox.outreach_key = message_status.outreach_key
    left join call_list on outbox.outreach_key = call_list.outreach_key
    where batches.batch_as_of <= {{ as_of_date() }}
),

final as (
    select
        outreach_key,
        episode_id,
        touch_number,
        person_id,
        rule_id,
        location_id,
        channel,
        outbox_state,
        touch_on,
        touched_at,
        message_status,
        call_outcome,
        is_made,
        coalesce(
            is_made
            and (
                (channel = 'call' and call_outcome in ('reached', 'voicemail', 'declined', 'not_now', 'booked'))
                or (
                    channel != 'call'
                    and message_status in (
                        'delivered', 'open', 'click', 'read', 'spamreport', 'unsubscribe', 'group_unsubscribe'
                    )
                )
            ),
            false
        ) as is_delivered,
        coalesce(
            outbox_state = 'failed'
            or (channel = 'call' and call_outcome = 'wrong_number')
            or (channel != 'call' and message_status in ('bounce', 'dropped', 'blocked', 'undelivered', 'failed')),
            false
        ) as is_undeliverable,
        coalesce(
            is_made and channel = 'call' and call_outcome in ('reached', 'declined', 'not_now', 'booked'),
            false
        ) as is_call_answered
    from joined
)

select * from final
