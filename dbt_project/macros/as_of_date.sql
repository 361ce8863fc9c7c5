{#- The run's as-of date (the DAG run's logical date, passed as --vars as_of). -#}
{% macro as_of_date() -%}
    cast('{{ var("as_of") }}' as date)
{%- endmacro %}
