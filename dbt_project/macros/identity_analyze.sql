{#- Fresh statistics for a table just built, so the next model's joins are planned on
    real row counts. Without them PostgreSQL guesses from stale raw-layer statistics
    (a freshly loaded extract looks empty) and may pick nested loops that rescan a
    whole table per row. Used as a post-hook; a no-op where the warehouse plans without. -#}
{% macro identity_analyze(relation) -%}
    {{ return(adapter.dispatch('identity_analyze', 'reactivation')(relation)) }}
{%- endmacro %}

{% macro default__identity_analyze(relation) -%}
{%- endmacro %}

{% macro postgres__identity_analyze(relation) -%}
    analyze {{ relation }}
{%- endmacro %}
