-- Interface (kept stable for care gaps and outreach): one row per staged patient
-- record with the person it belongs to. First version: deterministic keys only
-- (same first name, last name and birth date across records = one person).
with patients as (
    select * from {{ ref('stg_emr__patients') }}
),

keyed as (
    select
        patient_key,
        source_system,
        source_location_id,
        patient_id,
        location_id,
        {{ dbt.hash(dbt.concat([
            "lower(trim(first_name))", "'|'", "lower(trim(last_name))", "'|'",
            "cast(birth_date as " ~ dbt.type_string() ~ ")"
        ])) }} as person_id,
        'exact_name_birth_date' as match_rule,
        cast(1.0 as numeric) as match_score
    from patients
)

select * from keyed
