{#- int_person_facts, incremental by person.

    What the care-gap rules know of a person on the as-of date changes from one night to the
    next only when
      * identity matching moved one of their records (int_patients_mapped wrote it tonight):
        the person it joined and the person it left (previous_person_id) are derived again;
      * a record of theirs was re-derived tonight (its events or its person changed, see
        records_rederived_tonight): their value sets may have changed;
      * what they are on tonight's date differs from the stored row: their profile (home
        location, birth date, sex, death on record), their age (a birthday), whether they
        were alive (a death date reached), their last visits (a new visit, or one the
        as-of date reached); a person no longer profiled leaves;
      * one of their coded events changes by the calendar alone since the last night's
        as-of date: an event dated in between comes into view, a condition's resolution
        date passes, or an event leaves its value set's window (value_set_windows).
    Those people are derived again; every other row stands. The model is rebuilt whole when it
    is built for the first time or with --full-refresh, when its definition changed (its SQL,
    the value set windows, a location's practice type; not the visit counts behind it), when
    the as-of date went back before the last night's, or when the coded events were written
    whole tonight. -#}

{#- A person's age in completed years on a date (birth_date and on_date are SQL expressions). -#}
{% macro age_in_years(birth_date, on_date) -%}
    cast(
        floor(
            (
                {{ dbt.datediff(birth_date, on_date, 'month') }}
                - case when extract(day from {{ on_date }}) < extract(day from {{ birth_date }}) then 1 else 0 end
            ) / 12.0
        ) as {{ dbt.type_int() }}
    )
{%- endmacro %}

{% macro person_facts_definition() -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set inputs = run_query(
        "select coalesce((select string_agg(cast(windows as " ~ dbt.type_string() ~ "), '|'"
        ~ " order by cast(windows as " ~ dbt.type_string() ~ ")) from " ~ ref('value_set_windows') ~ " as windows), '')"
        ~ " || '#' || coalesce((select string_agg(concat_ws(',', source_system, location_id, practice_type), '|'"
        ~ " order by source_system, location_id) from " ~ ref('int_locations_classified') ~ "), '')"
    ) -%}
    {{- return('definition ' ~ local_md5(model.raw_code ~ '|' ~ inputs.columns[0].values()[0])) -}}
{%- endmacro %}

{#- Pre-hook: the people derived again tonight, in a temporary table the model reads, and
    their stored rows deleted (or every row, for a whole rebuild). -#}
{% macro person_facts_forget_people_to_rederive(relation) -%}
    {%- if is_incremental() -%}
        {%- if rebuilt_whole_tonight(relation, person_facts_definition, ref('int_clinical_events_coded')) -%}
            truncate {{ relation }}
        {%- else -%}
            {%- set last_night = "cast('" ~ stored_as_of(relation) ~ "' as date)" -%}
            drop table if exists pg_temp.person_facts_people_tonight;
            create temporary table person_facts_people_tonight as
            with records_rederived as (
                {{ records_rederived_tonight() }}
            ),

            run_parameters as (
                select {{ as_of_date() }} as as_of_date
            ),

            windows as materialized (
                select
                    value_set_windows.value_set_id,
                    {{ dbt.dateadd('month', '-1 * value_set_windows.lookback_months', last_night) }} as leaving_after,
                    {{ dbt.dateadd('month', '-1 * value_set_windows.lookback_months', as_of_date()) }}
                        as leaving_through
                from {{ ref('value_set_windows') }} as value_set_windows
                where value_set_windows.lookback_months is not null
            ),

            mapped as (
                select * from {{ ref('int_patients_mapped') }}
            )

            select mapped.person_id
            from mapped
            where mapped.built_at = {{ build_started_at() }}
            union
            select mapped.previous_person_id
            from mapped
            where mapped.built_at = {{ build_started_at() }} and mapped.previous_person_id is not null
            union
            select mapped.person_id
            from mapped
            where mapped.patient_key in (select records_rederived.patient_key from records_rederived)
            union
            select coalesce(profiles.person_id, held.person_id)
            from {{ ref('int_person_profiles') }} as profiles
            full outer join {{ relation }} as held
                on profiles.person_id = held.person_id
            left join {{ ref('int_last_completed_visits') }} as last_visits
                on profiles.person_id = last_visits.person_id
            cross join run_parameters
            where
                profiles.person_id is null
                or held.person_id is null
                or (
                    profiles.home_location_id,
                    profiles.birth_date,
                    profiles.sex,
                    profiles.deceased_date,
                    coalesce(profiles.is_deceased, false)
                    and (profiles.deceased_date is null or profiles.deceased_date <= run_parameters.as_of_date),
                    {{ age_in_years('profiles.birth_date', 'run_parameters.as_of_date') }},
                    last_visits.last_visit_date,
                    last_visits.last_visit_location_id,
                    last_visits.last_medical_visit_date,
                    last_visits.last_medical_location_id,
                    last_visits.last_dental_visit_date,
                    last_visits.last_dental_location_id
                ) is distinct from (
                    held.home_location_id,
                    held.birth_date,
                    held.sex,
                    held.deceased_date,
                    held.is_deceased,
                    held.age_years,
                    held.last_visit_date,
                    held.last_visit_location_id,
                    held.last_medical_visit_date,
                    held.last_medical_location_id,
                    held.last_dental_visit_date,
                    held.last_dental_location_id
                )
            union
            {#- One scan of the coded events with the dates as constants (a join to run_parameters
                would do the date arithmetic for each of millions of rows); an event of a windowed
                value set leaves the window when its date falls between the two nights' window starts. #}
            select coded.person_id
            from {{ ref('int_clinical_events_coded') }} as coded
            where
                (coded.event_date > {{ last_night }} and coded.event_date <= {{ as_of_date() }})
                or (coded.active_until > {{ last_night }} and coded.active_until <= {{ as_of_date() }})
                or (
                    coded.event_kind <> 'condition'
                    and coded.value_set_id in (select windows.value_set_id from windows)
                    and exists (
                        select 1
                        from windows
                        where
                            windows.value_set_id = coded.value_set_id
                            and coded.event_date > windows.leaving_after
                            and coded.event_date <= windows.leaving_through
                    )
                );
            analyze pg_temp.person_facts_people_tonight;
            delete from {{ relation }}
            where person_id in (select people.person_id from pg_temp.person_facts_people_tonight as people)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The model's filter: on an incremental night, only the people derived again tonight. -#}
{% macro person_facts_people_tonight(person_id) -%}
    {%- if not rebuilt_whole_tonight(this, person_facts_definition, ref('int_clinical_events_coded')) -%}
        where {{ person_id }} in (select people.person_id from pg_temp.person_facts_people_tonight as people)
    {%- endif -%}
{%- endmacro %}

{#- The coded events' filter: the events of those people's records, found through the bridge and
    read by the coded events' record index (a nested loop: a few thousand records of six million
    rows). A whole build reads every row, and plans its joins of millions of rows without nested
    loops (the planner sometimes misjudges them). -#}
{% macro person_facts_records_tonight(patient_key) -%}
    {%- if not rebuilt_whole_tonight(this, person_facts_definition, ref('int_clinical_events_coded')) -%}
        where {{ patient_key }} in (
            select mapped.patient_key
            from {{ ref('int_patients_mapped') }} as mapped
            where mapped.person_id in (select people.person_id from pg_temp.person_facts_people_tonight as people)
        )
    {%- endif -%}
{%- endmacro %}

{% macro person_facts_plan_settings() -%}
    {%- set whole = rebuilt_whole_tonight(this, person_facts_definition, ref('int_clinical_events_coded')) -%}
    {%- if target.type == 'postgres' and whole -%}
        set local enable_nestloop = off
    {%- endif -%}
{%- endmacro %}
