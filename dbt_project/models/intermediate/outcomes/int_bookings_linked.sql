-- Appointments that count as a booking (booked, then completed or a no-show; a
-- cancelled one does not), linked to the person, dated by when the booking was
-- made: the appointment's created_at when the extract has it, else its
-- scheduled time. Only bookings known on the as-of date.
with appointments as (
    select * from {{ ref('stg_emr__appointments') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

linked as (
    select
        appointments.appointment_key,
        person_sources.person_id,
        appointments.location_id,
        appointments.status as appointment_status,
        appointments.appointment_type,
        cast(coalesce(appointments.created_at, appointments.scheduled_at) as date) as booked_on,
        appointments.created_at is not null as booked_on_is_created_date,
        cast(appointments.scheduled_at as date) as scheduled_on
    from appointments
    inner join person_sources
        on
            appointments.source_system = person_sources.source_system
            and appointments.source_location_id = person_sources.source_location_id
            and appointments.patient_id = person_sources.patient_id
    where appointments.status in ('booked', 'completed', 'no_show')
),

final as (
    select * from linked
    where booked_on <= {{ as_of_date() }}
)

select * from final
