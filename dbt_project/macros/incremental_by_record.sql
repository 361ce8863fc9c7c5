{#- Models incremental by patient record, downstream of identity matching.

    int_patients_mapped writes only the records that are new or changed tonight (another
    person, another home location). int_clinical_events_coded re-derives the coded events of
    the records whose events int_clinical_events_unioned wrote tonight and of the records
    int_patients_mapped wrote tonight (each row carries the built_at of the build that wrote
    it); every other record's rows stand. The coded events are rebuilt whole when
      * they are built for the first time or with --full-refresh,
      * their definition changed: the model's SQL or the value_sets seed (the hash of both
        is kept as the table's comment), or
      * int_clinical_events_unioned was itself written whole tonight (a first build, a
        re-delivered file): a record it no longer holds must leave them too. -#}

{#- The hash of what the model's rows follow from: its SQL and the value sets. -#}
{% macro coded_events_definition_hash() -%}
    {%- set value_sets = run_query(
        "select coalesce(string_agg(cast(value_sets as " ~ dbt.type_string() ~ "), '|'"
        ~ " order by cast(value_sets as " ~ dbt.type_string() ~ ")), '') from " ~ ref('value_sets') ~ " as value_sets"
    ) -%}
    {{- return(local_md5(model.raw_code ~ '|' ~ value_sets.columns[0].values()[0])) -}}
{%- endmacro %}

{#- True when tonight's incremental run must rebuild the model whole (see above). -#}
{% macro coded_events_rebuilt_whole(relation) -%}
    {%- if not execute or relation is none or not is_incremental() -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set stored = run_query(
        "select obj_description(cast('" ~ relation.include(database=false) ~ "' as regclass), 'pg_class')"
    ).columns[0].values()[0] -%}
    {%- if stored != 'definition ' ~ coded_events_definition_hash() -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set events_written_whole = run_query(
        "select coalesce(min(built_at) = " ~ build_started_at() ~ ", true) from " ~ ref('int_clinical_events_unioned')
    ).columns[0].values()[0] -%}
    {{- return(events_written_whole) -}}
{%- endmacro %}

{#- Pre-hook: empty the model before a whole rebuild that runs as an incremental one. -#}
{% macro coded_events_forget_all(relation) -%}
    {%- if is_incremental() and coded_events_rebuilt_whole(relation) -%}
        truncate {{ relation }}
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the rows of the re-derived records that tonight's rows replace, deleted.
    A record is re-derived when the events model wrote its events tonight, or when it is
    matched to another person (then tonight wrote its rows under the new person); a
    record whose events all left (an encounter that moved to another record) is one the
    events model re-derived tonight too. -#}
{% macro coded_events_forget_replaced_rows(relation) -%}
    {%- if is_incremental() and not coded_events_rebuilt_whole(relation) -%}
        delete from {{ relation }} as held
        where
            held.built_at <> {{ build_started_at() }}
            and (
                held.patient_key in (
                    select events.patient_key
                    from {{ ref('int_clinical_events_unioned') }} as events
                    where events.built_at = {{ build_started_at() }}
                )
                or held.patient_key in (
                    select fresh.patient_key
                    from {{ relation }} as fresh
                    where fresh.built_at = {{ build_started_at() }}
                )
            )
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the definition the rows follow from, kept for the next night's check. -#}
{% macro coded_events_remember_definition(relation) -%}
    {%- if execute -%}
        comment on table {{ relation }} is 'definition {{ coded_events_definition_hash() }}'
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of int_patients_mapped: the records staging no longer holds (a re-delivered
    file dropped them) leave the bridge too. -#}
{% macro patients_mapped_forget_records_gone(relation) -%}
    {%- if is_incremental() -%}
        delete from {{ relation }} as held
        where not exists (
            select 1
            from {{ ref('person_sources') }} as person_sources
            where person_sources.patient_key = held.patient_key
        )
    {%- endif -%}
{%- endmacro %}
