{#- int_care_gap_closing_events, incremental by person.

    A person's closing events (the latest event of each closing value set on or before the
    as-of date, and the rule's latest value) change from one night to the next only when
      * their coded events changed: int_clinical_events_coded wrote rows of theirs tonight;
      * a stored row's event or latest value came from a record re-derived tonight (one
        int_clinical_events_unioned or int_patients_mapped wrote tonight): the event may be
        gone, or now belong to another person;
      * they have a coded event dated after the last night's as-of date and on or before
        tonight's: it comes into view.
    A removed event that was nobody's latest changes nothing. Those people are derived again;
    every other row stands. The model is rebuilt whole when it is built for the first time or
    with --full-refresh, when its definition changed (its SQL or the closing value sets of the
    rule catalog), when the as-of date went back before the last night's, or when the coded
    events were written whole tonight. The definition's hash and the as-of date the rows hold
    are kept as the table's comment. -#}

{% macro closing_events_definition() -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set value_sets = run_query(
        "select coalesce(string_agg(cast(rule_value_sets as " ~ dbt.type_string() ~ "), '|'"
        ~ " order by cast(rule_value_sets as " ~ dbt.type_string() ~ ")), '') from "
        ~ ref('int_care_gap_rule_value_sets') ~ " as rule_value_sets where value_set_role = 'closing'"
    ) -%}
    {{- return('definition ' ~ local_md5(model.raw_code ~ '|' ~ value_sets.columns[0].values()[0])) -}}
{%- endmacro %}

{% macro closing_events_rebuilt_whole(relation) -%}
    {{- return(rebuilt_whole_tonight(relation, closing_events_definition, ref('int_clinical_events_coded'))) -}}
{%- endmacro %}

{#- Pre-hook: the people derived again tonight, in a temporary table the model reads, and
    their stored rows deleted (or every row, for a whole rebuild). -#}
{% macro closing_events_forget_people_to_rederive(relation) -%}
    {%- if is_incremental() -%}
        {%- if closing_events_rebuilt_whole(relation) -%}
            truncate {{ relation }}
        {%- else -%}
            {%- set last_as_of = stored_as_of(relation) -%}
            drop table if exists pg_temp.closing_events_people_tonight;
            create temporary table closing_events_people_tonight as
            with records_rederived as (
                {{ records_rederived_tonight() }}
            )
            select coded.person_id
            from {{ ref('int_clinical_events_coded') }} as coded
            where coded.built_at = {{ build_started_at() }}
            union
            select held.person_id
            from {{ relation }} as held
            where
                held.evidence_patient_key in (select records_rederived.patient_key from records_rederived)
                or held.latest_value_patient_key in (select records_rederived.patient_key from records_rederived)
            union
            select coded.person_id
            from {{ ref('int_clinical_events_coded') }} as coded
            where
                coded.event_date > cast('{{ last_as_of }}' as date)
                and coded.event_date <= {{ as_of_date() }};
            analyze pg_temp.closing_events_people_tonight;
            delete from {{ relation }}
            where person_id in (select people.person_id from pg_temp.closing_events_people_tonight as people)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
