{#- Fails for every combination of the given columns that occurs more than once
    (the dbt_utils test of the same name, without the package: packages cannot be
    installed offline). -#}
{% test unique_combination(model, combination_of_columns) -%}
    {%- set columns_csv = combination_of_columns | join(', ') %}
    select
        {{ columns_csv }},
        count(*) as occurrences
    from {{ model }}
    group by {{ columns_csv }}
    having count(*) > 1
{%- endtest %}
