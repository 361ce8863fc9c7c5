-- depends_on: {{ ref('int_patient_match_pairs') }}
-- The blocking keys each patient record held when int_patient_match_pairs last compared
-- it: the state a night's match pairs start from. Built right after the match pairs (so a
-- night whose match pairs fail leaves it where they last were) and read by them, the next
-- night, to find the blocks tonight's loads changed (macros/identity_blocking.sql).
-- A record without any blocking key has one row with a null key: every record is here,
-- with the load it was compared at.
-- Incremental like int_patients_normalised: a night takes the records of its new loads.
{{
    config(
        materialized='incremental',
        unique_key='patient_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{{ forget_rows_of_superseded_loads(this, ['patients']) }}",
        post_hook=[
            "create index if not exists int_patient_blocking_keys_block_key_idx on {{ this }} (block_key)",
            "create index if not exists int_patient_blocking_keys_patient_key_idx on {{ this }} (patient_key)",
        ],
    )
}}

with patients as (
    select * from {{ ref('int_patients_normalised') }}
    {%- if is_incremental() %}
        where load_id > {{ loads_held_through(this) }}
    {%- endif %}
),

blocking_keys as (
    {{ identity_blocking_keys('patients') }}
),

final as (
    select
        patients.patient_key,
        patients.load_id,
        blocking_keys.block_type,
        blocking_keys.block_key
    from patients
    left join blocking_keys
        on patients.patient_key = blocking_keys.patient_key
)

select * from final
