-- The moments a booking can be credited to: each episode's first touch, and
-- each holdout assignment (both arms, so the holdout comparison credits both
-- arms the same way, from the day they were assigned).
with touches as (
    select * from {{ ref('int_touches_classified') }}
),

holdout as (
    select * from {{ ref('stg_ops__holdout') }}
),

episode_first_touches as (
    select
        episode_id,
        min(person_id) as person_id,
        min(rule_id) as rule_id,
        min(touch_on) as anchor_on
    from touches
    where is_made
    group by episode_id
),

unioned as (
    select
        'episode' as anchor_type,
        episode_id as anchor_id,
        person_id,
        rule_id,
        anchor_on
    from episode_first_touches
    union all
    select
        'holdout_assignment' as anchor_type,
        {{ dbt.concat(['person_id', "'|'", 'rule_id']) }} as anchor_id,
        person_id,
        rule_id,
        assigned_on as anchor_on
    from holdout
    where assigned_on <= {{ as_of_date() }}
),

final as (
    select * from unioned
)

select * from final
