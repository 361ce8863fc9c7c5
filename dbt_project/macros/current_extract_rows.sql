{#- The rows of the current extract of one raw entity: only loads still in force
    (status 'loaded': superseded and rejected files drop out), one row per source
    key with the latest extract winning, so exact repeats collapse here too. -#}
{% macro current_extract_rows(entity, key_columns) -%}
    select ranked.*
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
        where manifest.status = 'loaded'
    ) as ranked
    where ranked.recency_rank = 1
{%- endmacro %}
