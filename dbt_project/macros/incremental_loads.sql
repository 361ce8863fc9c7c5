{#- Incremental models downstream of the EMR staging models. Each row holds the load_id of
    the staged row it came from; a night reads the staged rows of loads newer than the
    newest load the model holds (the watermark), and re-derives every row those rows can
    change. A re-run over loads already held derives the same rows again. -#}

{#- The watermark as a scalar subquery: 0 when the model is empty (a full build). -#}
{% macro loads_held_through(relation) -%}
    (select coalesce(max(held.load_id), 0) from {{ relation }} as held)
{%- endmacro %}

{#- Pre-hook: empty the model when a load of one of `entities` was superseded (a
    re-delivered file) by a load newer than the watermark, which turns this incremental
    run into a full rebuild: staging rebuilt that entity from scratch, and rows it no
    longer holds must leave this model too. -#}
{% macro forget_rows_of_superseded_loads(relation, entities) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }}
        where {{ a_load_superseded_since(relation, entities) }}
    {%- endif -%}
{%- endmacro %}

{#- True when a load of one of `entities` was superseded (a re-delivered file) by a load
    newer than the watermark of `relation`. -#}
{% macro a_load_superseded_since(relation, entities) -%}
    exists (
        select 1
        from {{ source('emr', 'load_manifest') }} as manifest
        where
            manifest.entity in ('{{ entities | join("', '") }}')
            and manifest.status = 'superseded'
            and manifest.superseded_by > {{ loads_held_through(relation) }}
    )
{%- endmacro %}
