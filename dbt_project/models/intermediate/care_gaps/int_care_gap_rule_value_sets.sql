-- The rule catalog's value-set lists, one row per rule per role per value set:
-- closing (with its effective interval), exclusion, condition (population) and
-- short_interval. A pipe-separated list holds at most eight ids (the var
-- care_gap_max_list_items raises the limit).
{%- set max_items = var('care_gap_max_list_items', 8) %}
{%- set list_parts = [] %}
{%- for role, column in [
    ('closing', 'closing_value_set_ids'),
    ('exclusion', 'exclusion_value_set_ids'),
    ('condition', 'condition_value_set_id'),
    ('short_interval', 'short_interval_value_set_id'),
] %}
    {%- for position in range(1, max_items + 1) %}
        {%- do list_parts.append((role, column, position)) %}
    {%- endfor %}
{%- endfor %}

with rules as (
    select * from {{ ref('care_gap_rules') }}
),

closing_intervals as (
    select * from {{ ref('care_gap_closing_intervals') }}
),

listed as (
    {%- for role, column, position in list_parts %}
        select
            rule_id,
            '{{ role }}' as value_set_role,
            {{ position }} as list_position,
            trim({{ dbt.split_part(column, "'|'", position) }}) as value_set_id
        from rules
        where {{ column }} is not null
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

final as (
    select
        listed.rule_id,
        listed.value_set_role,
        listed.list_position,
        listed.value_set_id,
        case
            when listed.value_set_role = 'closing'
                then coalesce(closing_intervals.interval_months, rules.interval_months)
        end as interval_months,
        case
            when listed.value_set_role = 'closing' then closing_intervals.min_age_at_event
        end as min_age_at_event
    from listed
    inner join rules
        on listed.rule_id = rules.rule_id
    left join closing_intervals
        on
            listed.rule_id = closing_intervals.rule_id
            and listed.value_set_id = closing_intervals.value_set_id
    where listed.value_set_id is not null and listed.value_set_id != ''
)

select * from final
