{#- A stable surrogate key for a source record: hash of source system, the
    location the extract came from, and the record's source key columns. -#}
{% macro source_key(columns) -%}
    {{ dbt.hash(dbt.concat(["source_system", "'|'", "location_id_loaded"] + _source_key_parts(columns))) }}
{%- endmacro %}

{% macro _source_key_parts(columns) -%}
    {%- set parts = [] -%}
    {%- for column in columns -%}
        {%- do parts.append("'|'") -%}
        {%- do parts.append("coalesce(cast(" ~ column ~ " as " ~ dbt.type_string() ~ "), '')") -%}
    {%- endfor -%}
    {{ return(parts) }}
{%- endmacro %}
