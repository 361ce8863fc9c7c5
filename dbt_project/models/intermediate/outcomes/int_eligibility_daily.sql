{{
    config(
        materialized='incremental',
        unique_key='as_of',
        incremental_strategy='delete+insert',
        full_refresh=false,
        unlogged=false,
        on_schema_change='append_new_columns',
        meta={'tests_read': 'the_night_this_run_wrote'},
        post_hook=[
            "drop index if exists {{ this.schema }}.int_eligibility_daily_as_of_idx",
            "create index if not exists int_eligibility_daily_night_idx on {{ this }} (as_of)",
        ],
    )
}}

-- The nightly eligibility snapshot: every open care gap on the as-of date, and
-- whether it is tonight's candidate, suppressed (with the reason), or waiting
-- behind the person's higher-priority gap. Marts are rebuilt each night as of
-- that date, so this is the only place yesterday's eligibility survives: each
-- run replaces its own as-of date and keeps every other (full_refresh=false, so
-- a --full-refresh cannot wipe the history). It is WAL-logged (unlogged=false), unlike
-- the rest of the intermediate layer: this history exists nowhere else. Its index is on
-- the night alone: what reads it picks whole nights (the tests, the weekly count), and
-- a night's two million rows go in in half the time they take under an index that also
-- sorts them by person and rule (the index of that name, from before, is dropped).
with care_gaps as (
    select * from {{ ref('care_gaps') }}
),

persons as (
    select * from {{ ref('persons') }}
),

blockers as (
    select * from {{ ref('int_person_contact_blockers') }}
),

contactability as (
    select * from {{ ref('int_person_contactability') }}
),

segments as (
    select * from {{ ref('outreach_segments') }}
),

next_actions as (
    select * from {{ ref('int_outreach_next_actions') }}
),

-- The reasons the suppressions mart publishes, read before it: the snapshot then
-- builds beside the candidates and their invariant tests instead of after them.
suppressions as (
    select * from {{ ref('int_outreach_suppression_reasons') }}
),

open_gaps as (
    select
        care_gaps.person_id,
        care_gaps.rule_id,
        coalesce(care_gaps.location_id, persons.home_location_id) as location_id,
        case
            when blockers.last_visit_date is null then 'stalled_after_inquiry'
            else coalesce(segments.segment, 'lapsed_preventive')
        end as segment
    from care_gaps
    inner join persons on care_gaps.person_id = persons.person_id
    inner join blockers on care_gaps.person_id = blockers.person_id
    left join segments on care_gaps.rule_id = segments.rule_id
    where care_gaps.status = 'open'
),

distinct_reasons as (
    select distinct
        person_id,
        reason_code
    from suppressions
),

-- One reason per person decides the funnel column (the reasons overlap: a
-- deceased person may also have no phone); every reason is kept alongside.
suppression_reasons_ranked as (
    select
        person_id,
        reason_code,
        row_number() over (
            partition by person_id
            order by
                case reason_code
                    when 'deceased' then 1
                    when 'hold' then 2
                    when 'opted_out' then 3
                    when 'no_valid_contact' then 4
                    when 'future_appointment' then 5
                    when 'seen_recently' then 6
                    when 'attempt_cap_reached' then 7
                    when 'resting' then 8
                    else 9
                end asc,
                reason_code asc
        ) as reason_rank
    from distinct_reasons
),

person_suppressions as (
    select
        person_id,
        max(case when reason_rank = 1 then reason_code end) as primary_reason,
        string_agg(reason_code, ',' order by reason_code) as suppression_reasons
    from suppression_reasons_ranked
    group by person_id
),

-- A candidate is what outreach_candidates keeps: the next best action of a
-- person with a contactability row and no suppression reason.
gaps_decided as (
    select
        open_gaps.person_id,
        open_gaps.rule_id,
        open_gaps.location_id,
        open_gaps.segment,
        contactability.preferred_channel,
        next_actions.person_id is not null as is_next_action,
        person_suppressions.person_id is not null as is_suppressed,
        next_actions.person_id is not null
        and contactability.person_id is not null
        and person_suppressions.person_id is null as is_candidate,
        person_suppressions.primary_reason,
        person_suppressions.suppression_reasons
    from open_gaps
    left join next_actions
        on
            open_gaps.person_id = next_actions.person_id
            and open_gaps.rule_id = next_actions.rule_id
    left join person_suppressions on open_gaps.person_id = person_suppressions.person_id
    left join contactability on open_gaps.person_id = contactability.person_id
),

final as (
    select
        {{ as_of_date() }} as as_of,
        person_id,
        rule_id,
        location_id,
        segment,
        coalesce(preferred_channel, 'none') as preferred_channel,
        is_next_action,
        case
            when is_suppressed then 'suppressed'
            when is_candidate then 'candidate'
            else 'eligible'
        end as status,
        case
            when is_suppressed then primary_reason
            when not is_candidate then 'other_gap_first'
        end as reason,
        suppression_reasons
    from gaps_decided
)

select * from final
