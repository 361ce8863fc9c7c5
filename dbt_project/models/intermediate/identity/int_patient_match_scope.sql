-- The patient records whose candidate pairs a night's loads can change, and which of them
-- changed (their blocking keys are derived again; the others' are as last compared).
-- int_patient_match_pairs deletes and compares again the pairs of these records only.
-- A pair changes only when one of its records changed, or when a block the two share
-- crossed identity_max_block_size (macros/identity_blocking.sql). Before any keys were
-- compared (the first build) every record is in scope and counts as changed.
{%- set compared_keys = identity_compared_blocking_keys() %}

with patients as (
    select * from {{ ref('int_patients_normalised') }}
),
{%- if compared_keys is not none %}

{{ identity_match_scope('patients', compared_keys) }},

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
