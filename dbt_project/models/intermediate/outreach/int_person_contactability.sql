-- Which channels each person can be contacted on tonight: a valid contact for
-- the channel and no opt-out in force (a channel's own latest preference, or an
-- opt-out from every channel at least as recent).
with persons as (
    select * from {{ ref('persons') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

preferences as (
    select * from {{ ref('stg_emr__contact_preferences') }}
),

replies as (
    select * from {{ ref('stg_ops__opt_outs') }}
),

all_preferences as (
    select
        person_sources.person_id,
        preferences.channel,
        preferences.status,
        coalesce(preferences.effective_date, cast('1900-01-01' as date)) as effective_date,
        cast(preferences.extract_date as timestamp) as recorded_at
    from preferences
    inner join person_sources
        on
            preferences.source_system = person_sources.source_system
            and preferences.source_location_id = person_sources.source_location_id
            and preferences.patient_id = person_sources.patient_id
    where coalesce(preferences.effective_date, {{ as_of_date() }}) <= {{ as_of_date() }}
    union all
    -- A reply (STOP, START, unsubscribe) is newer than any extract that predates it.
    select
        person_id,
        channel,
        status,
        cast(recorded_at as date) as effective_date,
        cast(recorded_at as timestamp) as recorded_at
    from replies
),

preferences_by_person as (
    select
        *,
        row_number() over (
            partition by person_id, channel
            -- On a tie (two records of one person, same day, same extract) the opt-out wins.
            order by effective_date desc, recorded_at desc, (status = 'opt_out') desc
        ) as recency_rank
    from all_preferences
),

latest_preferences as (
    select * from preferences_by_person
    where recency_rank = 1
),

pivoted as (
    select
        person_id,
        max(case when channel = 'sms' then status end) as sms_status,
        max(case when channel = 'sms' then effective_date end) as sms_date,
        max(case when channel = 'email' then status end) as email_status,
        max(case when channel = 'email' then effective_date end) as email_date,
        max(case when channel = 'call' then status end) as call_status,
        max(case when channel = 'call' then effective_date end) as call_date,
        max(case when channel = 'any' then status end) as any_status,
        max(case when channel = 'any' then effective_date end) as any_date
    from latest_preferences
    group by person_id
),

opt_outs as (
    select
        persons.person_id,
        persons.phone_is_valid,
        persons.email_is_valid,
        coalesce(pivoted.sms_status = 'opt_in', false) as sms_opted_in,
        coalesce(pivoted.email_status = 'opt_in', false) as email_opted_in,
        coalesce(
            pivoted.sms_status = 'opt_out'
            or (pivoted.any_status = 'opt_out' and pivoted.any_date >= coalesce(pivoted.sms_date, pivoted.any_date)),
            false
        ) as sms_opted_out,
        coalesce(
            pivoted.email_status = 'opt_out'
            or (pivoted.any_status = 'opt_out' and pivoted.any_date >= coalesce(pivoted.email_date, pivoted.any_date)),
            false
        ) as email_opted_out,
        coalesce(
            pivoted.call_status = 'opt_out'
            or (pivoted.any_status = 'opt_out' and pivoted.any_date >= coalesce(pivoted.call_date, pivoted.any_date)),
            false
        ) as call_opted_out
    from persons
    left join pivoted on persons.person_id = pivoted.person_id
),

channels as (
    select
        *,
        phone_is_valid and not sms_opted_out as can_sms,
        email_is_valid and not email_opted_out as can_email,
        phone_is_valid and not call_opted_out as can_call
    from opt_outs
),

final as (
    select
        person_id,
        phone_is_valid,
        email_is_valid,
        sms_opted_out,
        email_opted_out,
        call_opted_out,
        can_sms,
        can_email,
        can_call,
        (can_sms or can_email or can_call) as is_contactable,
        case
            when sms_opted_in and can_sms then 'sms'
            when email_opted_in and can_email then 'email'
            when can_sms then 'sms'
            when can_email then 'email'
            when can_call then 'call'
        end as preferred_channel,
        concat_ws(
            ',',
            case when can_sms then 'sms' end,
            case when can_email then 'email' end,
            case when can_call then 'call' end
        ) as contactable_channels
    from channels
)

select * from final
