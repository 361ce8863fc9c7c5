{#- The rows of the current extract of one raw entity: only loads still in force
    (status 'loaded': superseded and rejected files drop out), one row per source
    key with the latest extract winning, so exact repeats collapse here too.

    In an incremental run (the staging model exists) only the loads newer than the
    newest load the model holds are read, and a new row replaces the held row of its
    key only when it comes from a later extract (or a later load of the same extract):
    the same winner the full rebuild picks. `key_name` is the staging model's
    surrogate key column (source_key over the same columns). The pre-hook
    staging_forget_superseded_loads empties the model first whenever it holds rows of a
    load that is no longer in force, so that case is a full rebuild.
    Assumes loads commit in load_id order before the build starts (the DAG ingests, then
    transforms): a load with a smaller load_id committed after a build would be skipped
    until the next `dbt build --full-refresh`. A changed staging model's columns fail the
    incremental run (on_schema_change: fail) and need that full refresh too. -#}
{% macro current_extract_rows(entity, key_columns, key_name=none) -%}
    select winners.*
    from (
        select
            ranked.*,
            {{ source_key(key_columns) }} as source_row_key
        from (
            select
                raw_rows.*,
                manifest.extract_date,
                row_number() over (
                    partition by
                        raw_rows.source_system,
                        raw_rows.location_id_loaded
                        {%- for key_column in key_columns %},
                        raw_rows.{{ key_column }}
                        {%- endfor %}
                    order by manifest.extract_date desc, raw_rows.load_id desc, raw_rows.source_line desc
                ) as recency_rank
            from {{ source('emr', entity) }} as raw_rows
            inner join {{ source('emr', 'load_manifest') }} as manifest
                on raw_rows.load_id = manifest.load_id
            where
                manifest.status = 'loaded'
                {%- if key_name and is_incremental() %}
                    and manifest.load_id > {{ loads_held_through(this) }}
                {%- endif %}
        ) as ranked
        where ranked.recency_rank = 1
    ) as winners
    {%- if key_name and is_incremental() %}
        left join {{ this }} as held_rows
            on winners.source_row_key = held_rows.{{ key_name }}
    where
        held_rows.{{ key_name }} is null
        or winners.extract_date > held_rows.extract_date
        or (winners.extract_date = held_rows.extract_date and winners.load_id > held_rows.load_id)
    {%- endif %}
{%- endmacro %}

{#- Hooks of the incremental staging models (dbt_project.yml, staging/emr). The model's
    entity is its name without the stg_emr__ prefix, its key column the entity in the
    singular + _key (patients -> patient_key, treatment_plans -> treatment_plan_key). -#}
{% macro staging_entity(relation) -%}
    {{ return(relation.identifier | replace('stg_emr__', '')) }}
{%- endmacro %}

{#- Pre-hook: empty the model when it holds a row of a load no longer in force (a file
    superseded by its re-delivery), which turns this incremental run into a full rebuild. -#}
{% macro staging_forget_superseded_loads(relation) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }}
        where exists (
            select 1
            from {{ source('emr', 'load_manifest') }} as manifest
            where
                manifest.entity = '{{ staging_entity(relation) }}'
                and manifest.status <> 'loaded'
                and exists (select 1 from {{ relation }} as held where held.load_id = manifest.load_id)
        )
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the indexes an incremental run uses (held rows by key, the watermark by load_id). -#}
{% macro staging_key_indexes(relation) -%}
    {%- set key_name = staging_entity(relation)[:-1] ~ '_key' -%}
    create index if not exists {{ relation.identifier }}_key_idx on {{ relation }} ({{ key_name }});
    create index if not exists {{ relation.identifier }}_load_idx on {{ relation }} (load_id)
{%- endmacro %}
