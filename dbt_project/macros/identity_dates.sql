{#- The date with day and month exchanged (1984-03-07 -> 1984-07-03), the commonest
    birth-date keying error; null when the swap is no date or the same date.
    make_date is PostgreSQL's; other warehouses dispatch to their own. -#}
{% macro identity_swap_day_month(date_expression) -%}
    {{ return(adapter.dispatch('identity_swap_day_month', 'reactivation')(date_expression)) }}
{%- endmacro %}

{% macro default__identity_swap_day_month(date_expression) -%}
    case
        when
            extract(day from {{ date_expression }}) <= 12
            and extract(day from {{ date_expression }}) <> extract(month from {{ date_expression }})
            then make_date(
                cast(extract(year from {{ date_expression }}) as integer),
                cast(extract(day from {{ date_expression }}) as integer),
                cast(extract(month from {{ date_expression }}) as integer)
            )
    end
{%- endmacro %}
