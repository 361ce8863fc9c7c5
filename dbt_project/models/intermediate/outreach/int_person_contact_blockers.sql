-- Facts that stop outreach to a person tonight, whatever the care gap:
-- a booked future appointment, a completed visit very recently, an active hold,
-- and the touch history (attempt cap and rest period).
with persons as (
    select * from {{ ref('persons') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

appointments as (
    select * from {{ ref('stg_emr__appointments') }}
),

encounters as (
    select * from {{ ref('stg_emr__encounters') }}
),

holds as (
    select * from {{ ref('stg_emr__holds') }}
),

touches as (
    select * from {{ ref('stg_ops__outreach_touches') }}
),

policy as (
    select
        max(case when setting = 'recent_visit_days' then cast(value as integer) end) as recent_visit_days,
        max(case when setting = 'rest_days_after_touch' then cast(value as integer) end) as rest_days,
        max(case when setting = 'max_attempts_per_episode' then cast(value as integer) end) as max_attempts,
        max(case when setting = 'episode_window_days' then cast(value as integer) end) as episode_window_days
    from {{ ref('contact_policy') }}
),

future_appointments as (
    select
        person_sources.person_id,
        min(cast(appointments.scheduled_at as date)) as next_appointment_date
    from appointments
    inner join person_sources
        on
            appointments.source_system = person_sources.source_system
            and appointments.source_location_id = person_sources.source_location_id
            and appointments.patient_id = person_sources.patient_id
    where
        appointments.status = 'booked'
        and cast(appointments.scheduled_at as date) > {{ as_of_date() }}
        and coalesce(cast(appointments.created_at as date), {{ as_of_date() }}) <= {{ as_of_date() }}
    group by person_sources.person_id
),

last_visits as (
    select
        person_sources.person_id,
        max(cast(encounters.encounter_date as date)) as last_visit_date
    from encounters
    inner join person_sources
        on
            encounters.source_system = person_sources.source_system
            and encounters.source_location_id = person_sources.source_location_id
            and encounters.patient_id = person_sources.patient_id
    where cast(encounters.encounter_date as date) <= {{ as_of_date() }}
    group by person_sources.person_id
),

active_holds as (
    select
        person_sources.person_id,
        min(holds.hold_type) as hold_type
    from holds
    inner join person_sources
        on
            holds.source_system = person_sources.source_system
            and holds.source_location_id = person_sources.source_location_id
            and holds.patient_id = person_sources.patient_id
    where
        coalesce(holds.start_date, {{ as_of_date() }}) <= {{ as_of_date() }}
        and coalesce(holds.end_date, {{ as_of_date() }}) >= {{ as_of_date() }}
    group by person_sources.person_id
),

touch_history as (
    select
        touches.person_id,
        max(cast(touches.touched_at as date)) as last_touch_date,
        count(*) as touches_in_window
    from touches
    cross join policy
    where
        cast(touches.touched_at as date) <= {{ as_of_date() }}
        and cast(touches.touched_at as date) > {{ dbt.dateadd('day', '-policy.episode_window_days', as_of_date()) }}
        and touches.status not in ('failed', 'cancelled')
    group by touches.person_id
),

final as (
    select
        persons.person_id,
        persons.is_deceased,
        future_appointments.next_appointment_date,
        last_visits.last_visit_date,
        active_holds.hold_type,
        touch_history.last_touch_date,
        coalesce(touch_history.touches_in_window, 0) as touches_in_window,
        future_appointments.next_appointment_date is not null as has_future_appointment,
        coalesce(
            last_visits.last_visit_date > {{ dbt.dateadd('day', '-policy.recent_visit_days', as_of_date()) }},
            false
        ) as was_seen_recently,
        active_holds.hold_type is not null as is_on_hold,
        coalesce(touch_history.touches_in_window, 0) >= policy.max_attempts as reached_attempt_cap,
        coalesce(
            touch_history.last_touch_date > {{ dbt.dateadd('day', '-policy.rest_days', as_of_date()) }},
            false
        ) as is_resting
    from persons
    cross join policy
    left join future_appointments on persons.person_id = future_appointments.person_id
    left join last_visits on persons.person_id = last_visits.person_id
    left join active_holds on persons.person_id = active_holds.person_id
    left join touch_history on persons.person_id = touch_history.person_id
)

select * from final
