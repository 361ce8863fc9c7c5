-- The records that open the event-driven rules, each with its state on the as-of
-- date, assigned to every catalog rule of its kind (rule_kind):
--   missed_appointment: a cancelled or no-show appointment; closed by another
--     appointment made on or after the miss (a rebooking, even if that one is later
--     missed too), or by a completed visit on or after it.
--   referral: an ordered referral; closed once scheduled or completed,
--     withdrawn when cancelled.
--   treatment_plan: a presented or accepted plan; closed once completed (on or
--     before the as-of date) or once a procedure with the plan's code is done,
--     withdrawn when declined.
--   recall: a due date set by the practice system (recall_type 'not_now' is the
--     patient's own "contact me later"); closed by a completed visit at a practice
--     of the same type from due_soon_days before the due date.
-- A rule of kind recall takes the recall types listed in its recall_types column;
-- one with an empty list takes every type no other recall rule lists.
with rules as (
    select * from {{ ref('care_gap_rules') }}
),

patients as (
    select * from {{ ref('int_patients_mapped') }}
),

locations as (
    select * from {{ ref('int_locations_classified') }}
),

appointments as (
    select * from {{ ref('stg_emr__appointments') }}
),

visits as (
    select * from {{ ref('int_completed_visits') }}
),

referrals as (
    select * from {{ ref('stg_emr__referrals') }}
),

treatment_plans as (
    select * from {{ ref('stg_emr__treatment_plans') }}
),

clinical_events as (
    select * from {{ ref('int_clinical_events_unioned') }}
),

recalls as (
    select * from {{ ref('stg_emr__recalls') }}
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

visits_to_date as (
    select visits.*
    from visits
    cross join run_parameters
    where visits.visit_date <= run_parameters.as_of_date
),

-- missed appointments ------------------------------------------------------------

person_appointments as (
    select
        patients.person_id,
        appointments.appointment_key,
        appointments.status,
        appointments.scheduled_at,
        appointments.created_at,
        appointments.cancelled_at,
        appointments.location_id
    from appointments
    inner join patients
        on
            appointments.source_system = patients.source_system
            and appointments.source_location_id = patients.source_location_id
            and appointments.patient_id = patients.patient_id
),

missed_appointments as (
    select
        person_appointments.person_id,
        person_appointments.appointment_key as trigger_id,
        cast(
            case
                when person_appointments.status = 'cancelled'
                    then coalesce(person_appointments.cancelled_at, person_appointments.scheduled_at)
                else person_appointments.scheduled_at
            end as date
        ) as trigger_date,
        person_appointments.location_id
    from person_appointments
    where person_appointments.status in ('cancelled', 'no_show')
),

-- Every appointment made is a (re)booking, whatever became of it later; when it was
-- made: its creation time, or (not recorded) the slot itself, or the as-of date for
-- a slot still ahead.
bookings as (
    select
        person_appointments.person_id,
        person_appointments.appointment_key,
        coalesce(
            cast(person_appointments.created_at as date),
            case
                when cast(person_appointments.scheduled_at as date) > run_parameters.as_of_date
                    then run_parameters.as_of_date
                else cast(person_appointments.scheduled_at as date)
            end
        ) as booked_date
    from person_appointments
    cross join run_parameters
),

rebook_events as (
    select
        person_id,
        appointment_key,
        booked_date as event_date
    from bookings
    union all
    select
        person_id,
        cast(null as {{ dbt.type_string() }}) as appointment_key,
        visit_date as event_date
    from visits_to_date
),

missed_appointment_triggers as (
    select
        'missed_appointment' as trigger_kind,
        missed_appointments.person_id,
        missed_appointments.trigger_id,
        cast(null as {{ dbt.type_string() }}) as recall_type,
        missed_appointments.trigger_date,
        min(rebook_events.event_date) as closed_date,
        case when min(rebook_events.event_date) is null then 'pending' else 'closed' end as trigger_status,
        missed_appointments.location_id
    from missed_appointments
    cross join run_parameters
    left join rebook_events
        on
            missed_appointments.person_id = rebook_events.person_id
            and missed_appointments.trigger_date <= rebook_events.event_date
            and missed_appointments.trigger_id != coalesce(rebook_events.appointment_key, '')
            and run_parameters.as_of_date >= rebook_events.event_date
    where missed_appointments.trigger_date <= run_parameters.as_of_date
    group by
        missed_appointments.person_id,
        missed_appointments.trigger_id,
        missed_appointments.trigger_date,
        missed_appointments.location_id
),

-- referrals ----------------------------------------------------------------------

referral_triggers as (
    select
        'referral' as trigger_kind,
        patients.person_id,
        referrals.referral_key as trigger_id,
        cast(null as {{ dbt.type_string() }}) as recall_type,
        referrals.ordered_date as trigger_date,
        case
            when referrals.status in ('scheduled', 'completed')
                then coalesce(referrals.scheduled_date, referrals.completed_date, referrals.ordered_date)
        end as closed_date,
        case
            when referrals.status = 'cancelled' then 'withdrawn'
            when referrals.status in ('scheduled', 'completed') then 'closed'
            else 'pending'
        end as trigger_status,
        patients.location_id
    from referrals
    inner join patients
        on
            referrals.source_system = patients.source_system
            and referrals.source_location_id = patients.source_location_id
            and referrals.patient_id = patients.patient_id
    cross join run_parameters
    where referrals.ordered_date <= run_parameters.as_of_date
),

-- treatment plans ------------------------------------------------------------------

person_plans as (
    select
        patients.person_id,
        treatment_plans.treatment_plan_key,
        treatment_plans.status,
        treatment_plans.presented_date,
        treatment_plans.completed_date,
        upper(replace(trim(treatment_plans.code), '.', '')) as code_key,
        patients.location_id
    from treatment_plans
    inner join patients
        on
            treatment_plans.source_system = patients.source_system
            and treatment_plans.source_location_id = patients.source_location_id
            and treatment_plans.patient_id = patients.patient_id
),

person_procedures as (
    select
        patients.person_id,
        clinical_events.code_key,
        clinical_events.event_date
    from clinical_events
    inner join patients
        on clinical_events.patient_key = patients.patient_key
    where clinical_events.event_kind = 'procedure'
),

plan_procedures as (
    select
        person_plans.treatment_plan_key,
        min(person_procedures.event_date) as first_done_date
    from person_plans
    inner join person_procedures
        on
            person_plans.person_id = person_procedures.person_id
            and person_plans.code_key = person_procedures.code_key
            and person_plans.presented_date <= person_procedures.event_date
    cross join run_parameters
    where person_procedures.event_date <= run_parameters.as_of_date
    group by person_plans.treatment_plan_key
),

treatment_plan_states as (
    select
        person_plans.*,
        person_plans.status = 'completed'
        and (
            person_plans.completed_date is null
            or person_plans.completed_date <= run_parameters.as_of_date
        ) as is_completed,
        plan_procedures.first_done_date
    from person_plans
    cross join run_parameters
    left join plan_procedures
        on person_plans.treatment_plan_key = plan_procedures.treatment_plan_key
    where person_plans.presented_date <= run_parameters.as_of_date
),

treatment_plan_triggers as (
    select
        'treatment_plan' as trigger_kind,
        person_id,
        treatment_plan_key as trigger_id,
        cast(null as {{ dbt.type_string() }}) as recall_type,
        presented_date as trigger_date,
        case
            when status = 'declined' then null
            when is_completed then coalesce(completed_date, first_done_date, presented_date)
            else first_done_date
        end as closed_date,
        case
            when status = 'declined' then 'withdrawn'
            when is_completed or first_done_date is not null then 'closed'
            else 'pending'
        end as trigger_status,
        location_id
    from treatment_plan_states
),

-- recalls --------------------------------------------------------------------------

person_recalls as (
    select
        patients.person_id,
        recalls.recall_key,
        lower(replace(replace(trim(recalls.recall_type), ' ', '_'), '-', '_')) as recall_type,
        recalls.due_date,
        patients.location_id,
        coalesce(locations.practice_type, 'medical') as practice_type
    from recalls
    inner join patients
        on
            recalls.source_system = patients.source_system
            and recalls.source_location_id = patients.source_location_id
            and recalls.patient_id = patients.patient_id
    left join locations
        on
            patients.source_system = locations.source_system
            and patients.location_id = locations.location_id
),

recall_rules as (
    select
        rule_id,
        {{ dbt.concat(["'|'", "lower(replace(coalesce(recall_types, ''), ' ', ''))", "'|'"]) }} as recall_type_list,
        coalesce(due_soon_days, 0) as due_soon_days
    from rules
    where rule_kind = 'recall'
),

listed_recall_types as (
    select distinct person_recalls.recall_type
    from person_recalls
    inner join recall_rules
        on
            {{ dbt.position(
                dbt.concat(["'|'", "person_recalls.recall_type", "'|'"]), 'recall_rules.recall_type_list'
            ) }} > 0
),

recall_assignments as (
    select
        recall_rules.rule_id,
        recall_rules.due_soon_days,
        person_recalls.*
    from person_recalls
    inner join recall_rules
        on
            {{ dbt.position(
                dbt.concat(["'|'", "person_recalls.recall_type", "'|'"]), 'recall_rules.recall_type_list'
            ) }} > 0
            or (
                recall_rules.recall_type_list = '||'
                and person_recalls.recall_type not in (select listed_recall_types.recall_type from listed_recall_types)
            )
),

recall_closures as (
    select
        recall_assignments.rule_id,
        recall_assignments.recall_key,
        min(visits_to_date.visit_date) as closed_date
    from recall_assignments
    inner join visits_to_date
        on
            recall_assignments.person_id = visits_to_date.person_id
            and recall_assignments.practice_type = visits_to_date.practice_type
            and visits_to_date.visit_date
            >= {{ dbt.dateadd('day', '-1 * recall_assignments.due_soon_days', 'recall_assignments.due_date') }}
    group by recall_assignments.rule_id, recall_assignments.recall_key
),

recall_triggers as (
    select
        recall_assignments.rule_id,
        'recall' as trigger_kind,
        recall_assignments.person_id,
        recall_assignments.recall_key as trigger_id,
        recall_assignments.recall_type,
        recall_assignments.due_date as trigger_date,
        recall_closures.closed_date,
        case when recall_closures.closed_date is null then 'pending' else 'closed' end as trigger_status,
        recall_assignments.location_id
    from recall_assignments
    left join recall_closures
        on
            recall_assignments.rule_id = recall_closures.rule_id
            and recall_assignments.recall_key = recall_closures.recall_key
),

-- every kind, assigned to the catalog's rules ---------------------------------------

non_recall_triggers as (
    select * from missed_appointment_triggers
    union all
    select * from referral_triggers
    union all
    select * from treatment_plan_triggers
),

final as (
    select
        rules.rule_id,
        non_recall_triggers.trigger_kind,
        non_recall_triggers.person_id,
        non_recall_triggers.trigger_id,
        non_recall_triggers.recall_type,
        non_recall_triggers.trigger_date,
        non_recall_triggers.closed_date,
        non_recall_triggers.trigger_status,
        non_recall_triggers.location_id
    from non_recall_triggers
    inner join rules
        on non_recall_triggers.trigger_kind = rules.rule_kind
    union all
    select
        rule_id,
        trigger_kind,
        person_id,
        trigger_id,
        recall_type,
        trigger_date,
        closed_date,
        trigger_status,
        location_id
    from recall_triggers
)

select * from final
