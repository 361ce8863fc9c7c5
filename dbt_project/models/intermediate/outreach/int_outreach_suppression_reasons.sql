-- Every reason a person with an open care gap must not be contacted tonight.
-- One row per person per reason (per channel for opt-outs); a person with no
-- row here is a candidate.
with next_actions as (
    select * from {{ ref('int_outreach_next_actions') }}
),

contactability as (
    select * from {{ ref('int_person_contactability') }}
),

blockers as (
    select * from {{ ref('int_person_contact_blockers') }}
),

facts as (
    select
        next_actions.person_id,
        next_actions.rule_id,
        next_actions.location_id,
        blockers.is_deceased,
        blockers.has_future_appointment,
        blockers.next_appointment_date,
        blockers.was_seen_recently,
        blockers.last_visit_date,
        blockers.is_on_hold,
        blockers.hold_type,
        blockers.reached_attempt_cap,
        blockers.touches_in_window,
        blockers.is_resting,
        blockers.last_touch_date,
        contactability.is_contactable,
        contactability.phone_is_valid,
        contactability.email_is_valid,
        contactability.sms_opted_out,
        contactability.call_opted_out,
        contactability.email_opted_out
    from next_actions
    inner join blockers on next_actions.person_id = blockers.person_id
    inner join contactability on next_actions.person_id = contactability.person_id
),

reasons as (
    {% set reason_rules = [
        ("deceased", "cast(null as text)", "is_deceased"),
        ("future_appointment", "cast(next_appointment_date as text)", "has_future_appointment"),
        ("seen_recently", "cast(last_visit_date as text)", "was_seen_recently"),
        ("hold", "hold_type", "is_on_hold"),
        ("attempt_cap_reached", "cast(touches_in_window as text)", "reached_attempt_cap"),
        ("resting", "cast(last_touch_date as text)", "is_resting"),
        ("opted_out", "'sms'", "not is_contactable and phone_is_valid and sms_opted_out"),
        ("opted_out", "'call'", "not is_contactable and phone_is_valid and call_opted_out"),
        ("opted_out", "'email'", "not is_contactable and email_is_valid and email_opted_out"),
        ("no_valid_contact", "cast(null as text)", "not phone_is_valid and not email_is_valid"),
    ] %}
    {% for reason_code, detail, condition in reason_rules %}
        select
            person_id,
            rule_id,
            location_id,
            '{{ reason_code }}' as reason_code,
            {{ detail }} as detail
        from facts
        where {{ condition }}
        {% if not loop.last %}union all{% endif %}
    {% endfor %}
)

select * from reasons
