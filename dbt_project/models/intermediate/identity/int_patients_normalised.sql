-- One row per staged patient record with the attributes identity matching compares,
-- normalised once: names folded to ASCII letters, email lower-cased, address line in
-- USPS-style abbreviations, postal code to five digits. Only valid phones and emails
-- take part: an invalid one ("n/a", "call me") must never link two records.
-- It also carries the record's contact facts as loaded, so the identity models read
-- the staging view once (a view over a freshly loaded raw layer plans badly in joins).
-- Incremental: a night normalises the records staged from its new loads only (see
-- macros/incremental_loads.sql); a re-delivered patients file rebuilds it.
{{
    config(
        materialized='incremental',
        unique_key='patient_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook="{{ forget_rows_of_superseded_loads(this, ['patients']) }}",
    )
}}

with patients as (
    select * from {{ ref('stg_emr__patients') }}
    {%- if is_incremental() %}
        where load_id > {{ loads_held_through(this) }}
    {%- endif %}
),

normalised as (
    select
        patient_key,
        source_system,
        source_location_id,
        patient_id,
        location_id,
        {{ identity_normalise_name('first_name') }} as first_name_normalised,
        {{ identity_normalise_name('last_name') }} as last_name_normalised,
        {{ identity_first_name_word('last_name') }} as last_name_first_word,
        birth_date,
        {{ identity_swap_day_month('birth_date') }} as birth_date_day_month_swapped,
        case when upper(trim(sex)) in ('M', 'F') then upper(trim(sex)) end as sex_known,
        case when phone_is_valid then phone_e164 end as phone_e164_valid,
        case when email_is_valid then lower(trim(email)) end as email_valid,
        {{ identity_normalise_address('address_line') }} as address_normalised,
        substr({{ identity_digits('postal_code') }}, 1, 5) as postal_code_5,
        nullif(trim(household_key), '') as household_key,
        nullif(trim(guarantor_id), '') as guarantor_id,
        sex,
        language,
        phone_e164,
        phone_is_valid,
        email,
        email_is_valid,
        deceased,
        deceased_date,
        extract_date,
        load_id
    from patients
),

final as (
    select
        *,
        {{ dbt.split_part('email_valid', "'@'", 1) }} as email_local_part,
        substr(first_name_normalised, 1, 1) as first_name_initial,
        substr(last_name_normalised, 1, 3) as last_name_prefix,
        {{ build_started_at() }} as built_at
    from normalised
)

select * from final
