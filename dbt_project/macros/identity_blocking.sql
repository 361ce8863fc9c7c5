{#- Blocking: which pairs of patient records identity matching compares at all. Records
    are compared when they share a blocking key, one of
      birth date + first three letters of the last name (also under a day/month swap),
      birth date + first initial (finds married-name changes),
      valid phone, valid email (finds birth-date typos).
    A key shared by more than max_block_size records is skipped: a clinic's front-desk
    phone or a placeholder birth date says nothing about identity and would explode the
    pairs. -#}

{% macro identity_max_block_size() -%}
    {{ return(var('identity_max_block_size', 50) | int) }}
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

{#- CTEs ending in `match_scope` (patient_key): the records whose candidate pairs tonight's
    loads can change. `patients` is int_patients_normalised, `compared_keys` the keys as
    last compared. A pair changes only when one of its records changed (a load newer than
    the keys as held), or when a block the two share crossed max_block_size. A block
    changes size only when a changed record enters or leaves it: its size before is its
    size now, less the changed records' keys now, plus their keys before. Every record of a
    block that crossed the limit is in scope. -#}
{% macro identity_match_scope(patients, compared_keys) -%}
scope_changed_records as (
    select changed.*
    from {{ patients }} as changed
    where
        changed.load_id > {{ loads_held_through(compared_keys) }}
        -- A re-delivered patients file (a load superseded by one newer than the keys as
        -- compared) can take records back to earlier loads or away: every record counts
        -- as changed, and the night compares every record again.
        or exists (
            select 1
            from {{ source('emr', 'load_manifest') }} as manifest
            where
                manifest.entity = 'patients'
                and manifest.status = 'superseded'
                and manifest.superseded_by > {{ loads_held_through(compared_keys) }}
        )
),

scope_changed_keys as (
    {{ identity_blocking_keys('scope_changed_records') }}
),

scope_changed_blocks as (
    select
        block_key,
        sum(held_now) as changed_keys_now,
        sum(1 - held_now) as changed_keys_before
    from (
        select
            block_key,
            1 as held_now
        from scope_changed_keys
        union all
        select
            held.block_key,
            0 as held_now
        from {{ compared_keys }} as held
        inner join scope_changed_records
            on held.patient_key = scope_changed_records.patient_key
        where held.block_key is not null
    ) as held_before_or_now
    group by block_key
),

scope_block_members as (
    select
        held.block_key,
        held.patient_key
    from {{ compared_keys }} as held
    inner join scope_changed_blocks
        on held.block_key = scope_changed_blocks.block_key
    where not exists (
        select 1
        from scope_changed_records
        where scope_changed_records.patient_key = held.patient_key
    )
    union all
    select
        block_key,
        patient_key
    from scope_changed_keys
),

scope_blocks_across_the_limit as (
    select scope_block_members.block_key
    from scope_block_members
    inner join scope_changed_blocks
        on scope_block_members.block_key = scope_changed_blocks.block_key
    group by
        scope_block_members.block_key,
        scope_changed_blocks.changed_keys_now,
        scope_changed_blocks.changed_keys_before
    having
        (count(*) <= {{ identity_max_block_size() }})
        <> (
            count(*) - scope_changed_blocks.changed_keys_now + scope_changed_blocks.changed_keys_before
            <= {{ identity_max_block_size() }}
        )
),

match_scope as (
    select patient_key from scope_changed_records
    union
    select scope_block_members.patient_key
    from scope_block_members
    inner join scope_blocks_across_the_limit
        on scope_block_members.block_key = scope_blocks_across_the_limit.block_key
)
{%- endmacro %}
