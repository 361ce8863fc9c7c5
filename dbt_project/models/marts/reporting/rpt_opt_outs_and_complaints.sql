{%- set opt_out_sources = {
    'sms_stop': ['sms_stop'],
    'email_unsubscribe': ['sendgrid_unsubscribe', 'sendgrid_group_unsubscribe'],
    'spam_report': ['sendgrid_spamreport'],
} -%}

-- Opt-outs and complaints per ISO week and channel, by the week they were
-- recorded (clock time): opt-outs by source (a STOP reply, an email
-- unsubscribe, a spam report, anything else), re-subscriptions, spam reports on
-- our messages, and the touches made that week on the channel for the rates.
with opt_outs as (
    select * from {{ ref('stg_ops__opt_outs') }}
),

message_status as (
    select * from {{ ref('stg_ops__message_status') }}
),

touches as (
    select * from {{ ref('int_touches_classified') }}
),

preference_changes as (
    select
        cast({{ dbt.date_trunc('week', 'recorded_at') }} as date) as week_start,
        channel,
        count(distinct case when status = 'opt_out' then person_id end) as people_opted_out,
        sum(case when status = 'opt_out' then 1 else 0 end) as opt_outs,
        {%- for column, source_names in opt_out_sources.items() %}
            sum(
                case
                    when
                        status = 'opt_out'
                        and opt_out_source in (
                            {%- for source_name in source_names %}
                                '{{ source_name }}'{% if not loop.last %},{% endif %}
                            {%- endfor %}
                        )
                        then 1
                    else 0
                end
            ) as opt_outs_{{ column }},
        {%- endfor %}
        sum(case when status = 'opt_in' then 1 else 0 end) as opt_ins,
        0 as spam_reports,
        0 as touches_made
    from opt_outs
    group by
        cast({{ dbt.date_trunc('week', 'recorded_at') }} as date),
        channel
),

spam_reports as (
    select
        cast({{ dbt.date_trunc('week', 'coalesce(message_status.occurred_at, message_status.updated_at)') }} as date)
            as week_start,
        touches.channel,
        0 as people_opted_out,
        0 as opt_outs,
        {%- for column in opt_out_sources %}
            0 as opt_outs_{{ column }},
        {%- endfor %}
        0 as opt_ins,
        count(*) as spam_reports,
        0 as touches_made
    from message_status
    inner join touches on message_status.outreach_key = touches.outreach_key
    where message_status.message_status = 'spamreport'
    group by
        cast({{ dbt.date_trunc('week', 'coalesce(message_status.occurred_at, message_status.updated_at)') }} as date),
        touches.channel
),

touches_made as (
    select
        cast({{ dbt.date_trunc('week', 'touched_at') }} as date) as week_start,
        channel,
        0 as people_opted_out,
        0 as opt_outs,
        {%- for column in opt_out_sources %}
            0 as opt_outs_{{ column }},
        {%- endfor %}
        0 as opt_ins,
        0 as spam_reports,
        count(*) as touches_made
    from touches
    where is_made and touched_at is not null
    group by
        cast({{ dbt.date_trunc('week', 'touched_at') }} as date),
        channel
),

unioned as (
    select * from preference_changes
    union all
    select * from spam_reports
    union all
    select * from touches_made
),

summed as (
    select
        week_start,
        channel,
        sum(people_opted_out) as people_opted_out,
        sum(opt_outs) as opt_outs,
        {%- for column in opt_out_sources %}
            sum(opt_outs_{{ column }}) as opt_outs_{{ column }},
        {%- endfor %}
        sum(opt_ins) as opt_ins,
        sum(spam_reports) as spam_reports,
        sum(touches_made) as touches_made
    from unioned
    group by week_start, channel
),

final as (
    select
        week_start,
        to_char(week_start, 'IYYY-"W"IW') as iso_week,
        channel,
        opt_outs,
        people_opted_out,
        {%- for column in opt_out_sources %}
            opt_outs_{{ column }},
        {%- endfor %}
        opt_outs - (
            {%- for column in opt_out_sources %}
                opt_outs_{{ column }}{% if not loop.last %} +{% endif %}
            {%- endfor %}
        ) as opt_outs_other,
        opt_ins,
        spam_reports,
        touches_made,
        round(cast(opt_outs as numeric) / nullif(touches_made, 0), 4) as opt_out_rate,
        round(cast(spam_reports as numeric) / nullif(touches_made, 0), 4) as spam_report_rate,
        {{ as_of_date() }} as as_of
    from summed
)

select * from final
