{#- The run's as-of date: the DAG run's logical date. reactivation transform passes it in the
    environment (REACTIVATION_AS_OF), read only when a node runs, so a new night's date leaves
    dbt's partial parse valid (a changed --vars value makes dbt parse the whole project again,
    seconds of a nightly build). A --vars as_of (a hand-run dbt, a unit test's overrides) wins. -#}
{% macro as_of_value() -%}
    {%- set passed = var('as_of', none) -%}
    {%- if passed is not none -%}
        {{- passed -}}
    {%- elif execute -%}
        {{- env_var('REACTIVATION_AS_OF', '2026-01-01') -}}
    {%- else -%}
        2026-01-01
    {%- endif -%}
{%- endmacro %}

{% macro as_of_date() -%}
    cast('{{ as_of_value() }}' as date)
{%- endmacro %}
