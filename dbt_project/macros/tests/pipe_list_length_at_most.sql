{#- Fails for every row whose pipe-separated list in column_name holds more than
    max_items entries (the catalog's list columns are split into at most that many). -#}
{% test pipe_list_length_at_most(model, column_name, max_items) -%}
    select {{ column_name }}
    from {{ model }}
    where
        {{ column_name }} is not null
        and {{ dbt.length(column_name) }} - {{ dbt.length(dbt.replace(column_name, "'|'", "''")) }} + 1 > {{ max_items }}
{%- endtest %}
