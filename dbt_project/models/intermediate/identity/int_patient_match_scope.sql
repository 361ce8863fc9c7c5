-- The patient records whose candidate pairs a night's loads can change, and which of them
-- changed (their blocking keys are derived again; the others' are as last compared).
-- int_patient_match_pairs deletes and compares again the pairs of these records only.
-- A pair changes only when one of its records changed (a load newer than the keys as
-- compared), or when a block the two share crossed identity_max_block_size. A block
-- changes size only when a changed record enters or leaves it: its size before is its
-- size now, less the changed records' keys now, plus their keys before. Every record of a
-- block that crossed the limit is in scope. Before any keys were compared (the first
-- build) every record is in scope and counts as changed.
{%- set compared_keys = identity_compared_blocking_keys() %}

with patients as (
    select * from {{ ref('int_patients_normalised') }}
),
{%- if compared_keys is not none %}

scope_changed_records as (
    select changed.*
    from patients as changed
    where
        changed.load_id > {{ loads_held_through(compared_keys) }}
        -- A re-delivered patients file (a load superseded by one newer than the keys as
        -- compared) can take records back to earlier loads or away: every record counts
        -- as changed, and the night compares every record again.
        or {{ a_load_superseded_since(compared_keys, ['patients']) }}
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
),

final as (
    select
        match_scope.patient_key,
        scope_changed_records.patient_key is not null as is_changed
    from match_scope
    left join scope_changed_records
        on match_scope.patient_key = scope_changed_records.patient_key
)
{%- else %}

    final as (
        select
            patient_key,
            true as is_changed
        from patients
    )
{%- endif %}

select * from final
