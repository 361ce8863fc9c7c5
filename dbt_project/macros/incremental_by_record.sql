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

{#- The patient records re-derived tonight, as a select of patient_key: those whose events
    int_clinical_events_unioned wrote tonight (a record whose events all left, to an
    encounter moved to another record, is one of them) and those int_patients_mapped wrote
    tonight (new, or matched to another person). -#}
{% macro records_rederived_tonight() -%}
    select events.patient_key
    from {{ ref('int_clinical_events_unioned') }} as events
    where events.built_at = {{ build_started_at() }}
    union
    select mapped.patient_key
    from {{ ref('int_patients_mapped') }} as mapped
    where mapped.built_at = {{ build_started_at() }}
{%- endmacro %}

{#- True when every row of `relation`, a model built earlier in this run, was written by this
    run (or it has none): it was written whole tonight. -#}
{% macro written_whole_tonight(relation) -%}
    {%- set whole = run_query(
        "select coalesce(min(built_at) = " ~ build_started_at() ~ ", true) from " ~ relation
    ) -%}
    {{- return(whole.columns[0].values()[0]) -}}
{%- endmacro %}

{#- The comment kept on a table (the hash of the definition its rows follow from), or ''. -#}
{% macro stored_table_comment(relation) -%}
    {%- set stored = run_query(
        "select obj_description(cast('" ~ relation.include(database=false) ~ "' as regclass), 'pg_class')"
    ) -%}
    {{- return(stored.columns[0].values()[0] or '') -}}
{%- endmacro %}

{#- What the coded events follow from, as kept in the table's comment: the hash of the model's
    SQL and the value sets. -#}
{% macro coded_events_definition() -%}
    {%- set value_sets = run_query(
        "select coalesce(string_agg(cast(value_sets as " ~ dbt.type_string() ~ "), '|'"
        ~ " order by cast(value_sets as " ~ dbt.type_string() ~ ")), '') from " ~ ref('value_sets') ~ " as value_sets"
    ) -%}
    {{- return('definition ' ~ local_md5(model.raw_code ~ '|' ~ value_sets.columns[0].values()[0])) -}}
{%- endmacro %}

{#- True when tonight's incremental run must rebuild the coded events whole (see above). -#}
{% macro coded_events_rebuilt_whole(relation) -%}
    {%- if not execute or relation is none or not is_incremental() -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- if stored_table_comment(relation) != coded_events_definition() -%}
        {{- return(true) -}}
    {%- endif -%}
    {{- return(written_whole_tonight(ref('int_clinical_events_unioned'))) -}}
{%- endmacro %}

{#- Pre-hook: empty the model before a whole rebuild that runs as an incremental one. -#}
{% macro coded_events_forget_all(relation) -%}
    {%- if is_incremental() and coded_events_rebuilt_whole(relation) -%}
        truncate {{ relation }}
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the rows tonight's rows replace, deleted: every earlier row of a record
    re-derived tonight (a record left with no coded event keeps none). -#}
{% macro coded_events_forget_replaced_rows(relation) -%}
    {%- if is_incremental() and not coded_events_rebuilt_whole(relation) -%}
        delete from {{ relation }} as held
        where
            held.built_at <> {{ build_started_at() }}
            and held.patient_key in ({{ records_rederived_tonight() }})
    {%- endif -%}
{%- endmacro %}

{#- Post-hook: the definition the rows follow from (`definition`: the macro that gives it,
    called only when the hook runs), kept as the table's comment for the next night's check. -#}
{% macro remember_definition(relation, definition) -%}
    {%- if execute -%}
        comment on table {{ relation }} is '{{ definition() }}'
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

{#- Models incremental by person that hold rows for an as-of date (int_care_gap_closing_events,
    int_person_facts) keep "<definition> as_of <date>" as the table's comment. -#}

{#- True when tonight's run must rebuild `relation` whole: a first build or --full-refresh, a
    changed definition (`definition`: the macro that gives it, called only on an incremental
    night), an as-of date before the last night's, or `upstream` written whole tonight. -#}
{% macro rebuilt_whole_tonight(relation, definition, upstream) -%}
    {%- if not execute or relation is none or not is_incremental() -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- set stored = stored_table_comment(relation) -%}
    {%- if not stored.startswith(definition() ~ ' as_of ') -%}
        {{- return(true) -}}
    {%- endif -%}
    {%- if stored.split(' as_of ')[1] > as_of_value() -%}
        {{- return(true) -}}
    {%- endif -%}
    {{- return(written_whole_tonight(upstream)) -}}
{%- endmacro %}

{#- The as-of date the stored rows hold (from the table's comment). -#}
{% macro stored_as_of(relation) -%}
    {{- return(stored_table_comment(relation).split(' as_of ')[1]) -}}
{%- endmacro %}

{#- Post-hook: the definition and the as-of date the rows now hold, for the next night. -#}
{% macro remember_definition_and_as_of(relation, definition) -%}
    {%- if execute -%}
        comment on table {{ relation }} is '{{ definition }} as_of {{ as_of_value() }}'
    {%- endif -%}
{%- endmacro %}
