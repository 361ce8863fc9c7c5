{{
    config(
        materialized='incremental',
        unique_key='as_of',
        incremental_strategy='delete+insert',
        full_refresh=false,
        unlogged=false,
        on_schema_change='append_new_columns',
        post_hook=[
            "create index if not exists int_eligibility_daily_as_of_idx
                on {{ this }} (as_of, person_id, rule_id)",
        ],
    )
}}

-- The nightly eligibility snapshot: every open care gap on the as-of date, and
-- whether it is tonight's candidate, suppressed (with the reason), or waiting
-- behind the person's higher-priority gap. Marts are rebuilt each night as of
-- that date, so this is the only place yesterday's eligibility survives: each
-- run replaces its own as-of date and keeps every other (full_refresh=false, so
-- a --full-refresh cannot wipe the history). It is WAL-logged (unlogged=false), unlike
-- the rest of the intermediate layer: this history exists nowhere else.
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

candidates as (
    select * from {{ ref('outreach_candidates') }}
),

suppressions as (
    select * from {{ ref('outreach_suppressions') }}
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

final as (
    select
        {{ as_of_date() }} as as_of,
        open_gaps.person_id,
        open_gaps.rule_id,
        open_gaps.location_id,
        open_gaps.segment,
        coalesce(contactability.preferred_channel, 'none') as preferred_channel,
        next_actions.person_id is not null as is_next_action,
        case
            when person_suppressions.person_id is not null then 'suppressed'
            when candidates.person_id is not null then 'candidate'
            else 'eligible'
        end as status,
        case
            when person_suppressions.person_id is not null then person_suppressions.primary_reason
            when candidates.person_id is null then 'other_gap_first'
        end as reason,
        person_suppressions.suppression_reasons
    from open_gaps
    left join next_actions
        on
            open_gaps.person_id = next_actions.person_id
            and open_gaps.rule_id = next_actions.rule_id
    left join candidates
        on
            open_gaps.person_id = candidates.person_id
            and open_gaps.rule_id = candidates.rule_id
    left join person_suppressions on open_gaps.person_id = person_suppressions.person_id
    left join contactability on open_gaps.person_id = contactability.person_id
)

select * from final
