-- Every reason a person with an open care gap must not be contacted tonight.
-- One row per person per reason; a person with no row here is a candidate.
with next_actions as (
    select * from {{ ref('int_outreach_next_actions') }}
),

contactability as (
    select * from {{ ref('int_person_contactability') }}
),

blockers as (
    select * from {{ ref('int_person_contact_blockers') }}
),

reasons as (
    select next_actions.person_id, 'deceased' as reason_code, cast(null as text) as detail
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.is_deceased
    union all
    select next_actions.person_id, 'future_appointment', cast(blockers.next_appointment_date as text)
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.has_future_appointment
    union all
    select next_actions.person_id, 'seen_recently', cast(blockers.last_visit_date as text)
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.was_seen_recently
    union all
    select next_actions.person_id, 'hold', blockers.hold_type
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.is_on_hold
    union all
    select next_actions.person_id, 'attempt_cap_reached', cast(blockers.touches_in_window as text)
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.reached_attempt_cap
    union all
    select next_actions.person_id, 'resting', cast(blockers.last_touch_date as text)
    from next_actions inner join blockers on next_actions.person_id = blockers.person_id
    where blockers.is_resting
    union all
    select next_actions.person_id, 'opted_out', 'sms'
    from next_actions inner join contactability on next_actions.person_id = contactability.person_id
    where not contactability.is_contactable and contactability.phone_is_valid and contactability.sms_opted_out
    union all
    select next_actions.person_id, 'opted_out', 'call'
    from next_actions inner join contactability on next_actions.person_id = contactability.person_id
    where not contactability.is_contactable and contactability.phone_is_valid and contactability.call_opted_out
    union all
    select next_actions.person_id, 'opted_out', 'email'
    from next_actions inner join contactability on next_actions.person_id = contactability.person_id
    where not contactability.is_contactable and contactability.email_is_valid and contactability.email_opted_out
    union all
    select next_actions.person_id, 'no_valid_contact', cast(null as text)
    from next_actions inner join contactability on next_actions.person_id = contactability.person_id
    where not contactability.phone_is_valid and not contactability.email_is_valid
),

final as (
    select
        reasons.person_id,
        next_actions.rule_id,
        next_actions.location_id,
        reasons.reason_code,
        reasons.detail
    from reasons
    inner join next_actions on reasons.person_id = next_actions.person_id
)

select * from final
