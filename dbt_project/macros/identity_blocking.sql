{#- Blocking: which pairs of patient records identity matching compares at all. Records
    are compared when they share a blocking key, one of
      birth date + first three letters of the last name (also under a day/month swap),
      birth date + first initial (finds married-name changes),
      valid phone, valid email (finds birth-date typos).
    A key shared by more than max_block_size records is skipped: a clinic's front-desk
    phone or a placeholder birth date says nothing about identity and would explode the
    pairs. -#}

{% macro identity_max_block_size() -%}
    {{ return(var('identity_max_block_size') | int) }}
{%- endmacro %}

{#- Every blocking key of the records in `patients` (a CTE or relation with the columns of
    int_patients_normalised): patient_key, block_type, block_key. -#}
{% macro identity_blocking_keys(patients) -%}
    select
        patient_key,
        'birth_date_last_name' as block_type,
        {{ dbt.concat(["'bl|'", "cast(birth_date as " ~ dbt.type_string() ~ ")", "'|'", "last_name_prefix"]) }}
            as block_key
    from {{ patients }}
    where birth_date is not null and last_name_prefix is not null
    union all
    select
        patient_key,
        'birth_date_last_name' as block_type,
        {{ dbt.concat([
            "'bl|'", "cast(birth_date_day_month_swapped as " ~ dbt.type_string() ~ ")", "'|'", "last_name_prefix"
        ]) }} as block_key
    from {{ patients }}
    where birth_date_day_month_swapped is not null and last_name_prefix is not null
    union all
    select
        patient_key,
        'birth_date_first_initial' as block_type,
        {{ dbt.concat(["'bf|'", "cast(birth_date as " ~ dbt.type_string() ~ ")", "'|'", "first_name_initial"]) }}
            as block_key
    from {{ patients }}
    where birth_date is not null and first_name_initial is not null
    union all
    select
        patient_key,
        'phone' as block_type,
        {{ dbt.concat(["'ph|'", "phone_e164_valid"]) }} as block_key
    from {{ patients }}
    where phone_e164_valid is not null
    union all
    select
        patient_key,
        'email' as block_type,
        {{ dbt.concat(["'em|'", "email_valid"]) }} as block_key
    from {{ patients }}
    where email_valid is not null
{%- endmacro %}

{#- The blocking keys each record held when int_patient_match_pairs last compared it
    (int_patient_blocking_keys, built right after it), or none before the first
    incremental build. Looked up, not ref'd: the model is downstream of match pairs. -#}
{% macro identity_compared_blocking_keys() -%}
    {%- if this is none or not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(adapter.get_relation(database=this.database, schema=this.schema, identifier='int_patient_blocking_keys')) }}
{%- endmacro %}
