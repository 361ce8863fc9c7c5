{#- Points per signal: roughly log2 of how much likelier the agreement is between two
    records of one person than between two people. Changing them changes who is merged:
    re-run bench/identity_quality.py and the identity tests. -#}
{%- set points = {
    'birth_date_equal': 4.0, 'birth_date_day_month_swapped': 2.0, 'birth_date_one_part_differs': 1.0,
    'birth_date_differs': -4.0,
    'first_name_equal': 4.0, 'first_name_nickname': 3.0, 'first_name_one_edit': 2.5,
    'first_initial_only': 0.5, 'first_name_differs': -3.0,
    'last_name_equal': 3.0, 'last_name_similar': 2.0, 'last_name_differs': -1.0,
    'sex_differs': -4.0,
    'phone_equal': 2.5, 'email_equal': 3.0, 'email_local_part_only': 1.5,
    'address_equal': 2.0, 'postal_code_only': 0.5,
    'address_conflict': -1.5, 'phone_conflict': -1.0, 'email_conflict': -1.0,
} -%}
{%- set match_threshold = 10.0 -%}
{%- set review_threshold = 8.0 -%}
{%- set max_block_size = identity_max_block_size() -%}

{%- set compared_keys = identity_compared_blocking_keys() if is_incremental() else none -%}
{%- set scoped = compared_keys is not none -%}
{{
    config(
        materialized='incremental',
        on_schema_change='fail',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook="{% if is_incremental() %}
            delete from {{ this }}
            where
                patient_key_a in (select patient_key from {{ ref('int_patient_match_scope') }})
                or patient_key_b in (select patient_key from {{ ref('int_patient_match_scope') }})
        {% endif %}",
    )
}}
-- depends_on: {{ ref('int_patient_match_scope') }}

-- Candidate pairs of patient records, the evidence for and against each being one
-- person, a score and a decision.
--
-- Blocking (which pairs are compared at all, macros/identity_blocking.sql): records share
-- a blocking key (birth date + last-name prefix, birth date + first initial, phone,
-- email). Keys shared by more than {{ max_block_size }} records are skipped: a clinic's
-- front-desk phone or a placeholder birth date says nothing about identity and would
-- explode the pairs.
--
-- Incremental: a night compares again only the records in int_patient_match_scope (the
-- records of its new loads, and every record of a block that crossed the size limit);
-- a pre-hook deletes their pairs first. The keys as last compared are in
-- int_patient_blocking_keys, built right after this model.
--
-- Decision: 'match' needs the guards (compatible first names, compatible birth dates,
-- no M/F conflict) AND one of: same email + birth date; same phone + birth date; a
-- score of {{ match_threshold }}+. Same first + last name + birth date scores 11, a match; a
-- different address (-1.5), or a different phone and email (-1 each), takes it to
-- 'review': that is what two people of one name and birth date look like.
-- The guards are what keep households apart: twins share birth date, surname, address,
-- phone and often email but not first names; a parent and child with one name differ
-- in birth date; a couple sharing a phone or email differ in both.
with patients as (
    select * from {{ ref('int_patients_normalised') }}
),

names_compared as (
    select * from {{ ref('int_names_compared') }}
),

{%- if scoped %}

match_scope as (
    select * from {{ ref('int_patient_match_scope') }}
),

scope_changed_records as (
    select patients.*
    from patients
    inner join match_scope
        on patients.patient_key = match_scope.patient_key
    where match_scope.is_changed
),

scope_changed_keys as (
    {{ identity_blocking_keys('scope_changed_records') }}
),

-- The keys of the records in scope, and every record that holds one of them now: the
-- changed records' keys as loaded, the others' as last compared (they have not changed).
scope_keys as (
    select
        held.patient_key,
        held.block_key
    from {{ compared_keys }} as held
    inner join match_scope
        on held.patient_key = match_scope.patient_key
    where held.block_key is not null and not match_scope.is_changed
    union all
    select
        patient_key,
        block_key
    from scope_changed_keys
),

blocking_keys as (
    select
        held.patient_key,
        held.block_type,
        held.block_key
    from {{ compared_keys }} as held
    where
        held.block_key in (select scope_keys.block_key from scope_keys)
        and not exists (
            select 1
            from match_scope
            where match_scope.patient_key = held.patient_key and match_scope.is_changed
        )
        -- a record a re-delivered patients file took away holds no key any more
        and exists (
            select 1
            from patients
            where patients.patient_key = held.patient_key
        )
    union all
    select
        patient_key,
        block_type,
        block_key
    from scope_changed_keys
),
{%- else %}

    blocking_keys as (
        {{ identity_blocking_keys('patients') }}
    ),
{%- endif %}

block_sizes as (
    select
        block_key,
        count(*) as block_size
    from blocking_keys
    group by block_key
),

usable_blocking_keys as (
    select blocking_keys.*
    from blocking_keys
    inner join block_sizes
        on blocking_keys.block_key = block_sizes.block_key
    where block_sizes.block_size between 2 and {{ max_block_size }}
),

blocked_pairs as (
    select distinct
        keys_a.patient_key as patient_key_a,
        keys_b.patient_key as patient_key_b,
        keys_a.block_type
    from usable_blocking_keys as keys_a
    inner join usable_blocking_keys as keys_b
        on
            keys_a.block_key = keys_b.block_key
            and keys_a.patient_key < keys_b.patient_key
    {%- if scoped %}
        where
            keys_a.patient_key in (select match_scope.patient_key from match_scope)
            or keys_b.patient_key in (select match_scope.patient_key from match_scope)
    {%- endif %}
),

candidate_pairs as (
    select
        patient_key_a,
        patient_key_b,
        {{ dbt.listagg('block_type', "','", 'order by block_type') }} as blocked_on
    from blocked_pairs
    group by patient_key_a, patient_key_b
),

compared as (
    select
        candidate_pairs.patient_key_a,
        candidate_pairs.patient_key_b,
        candidate_pairs.blocked_on,
        record_a.source_system = record_b.source_system
        and record_a.source_location_id = record_b.source_location_id as is_same_source_location,
        coalesce(record_a.birth_date = record_b.birth_date, false) as is_birth_date_equal,
        coalesce(
            record_a.birth_date_day_month_swapped = record_b.birth_date, false
        ) as is_birth_date_day_month_swapped,
        coalesce(
            record_a.birth_date <> record_b.birth_date
            and extract(year from record_a.birth_date) = extract(year from record_b.birth_date)
            and (
                extract(month from record_a.birth_date) = extract(month from record_b.birth_date)
                or extract(day from record_a.birth_date) = extract(day from record_b.birth_date)
            ),
            false
        ) as is_birth_date_one_part_differs,
        coalesce(record_a.first_name_normalised = record_b.first_name_normalised, false) as is_first_name_equal,
        coalesce(first_names.is_nickname_pair, false) as is_first_name_nickname,
        coalesce(first_names.is_one_edit_apart, false) as is_first_name_one_edit,
        coalesce(record_a.first_name_initial = record_b.first_name_initial, false) as is_first_initial_equal,
        coalesce(record_a.last_name_normalised = record_b.last_name_normalised, false) as is_last_name_equal,
        coalesce(
            last_names.is_one_edit_apart
            or record_a.last_name_first_word = record_b.last_name_first_word,
            false
        ) as is_last_name_similar,
        coalesce(record_a.sex_known <> record_b.sex_known, false) as is_sex_conflict,
        coalesce(record_a.phone_e164_valid = record_b.phone_e164_valid, false) as is_phone_equal,
        coalesce(record_a.email_valid = record_b.email_valid, false) as is_email_equal,
        coalesce(record_a.email_local_part = record_b.email_local_part, false) as is_email_local_part_equal,
        coalesce(
            record_a.address_normalised = record_b.address_normalised
            and record_a.postal_code_5 = record_b.postal_code_5,
            false
        ) as is_address_equal,
        coalesce(record_a.postal_code_5 = record_b.postal_code_5, false) as is_postal_code_equal,
        coalesce(
            record_a.address_normalised <> record_b.address_normalised
            or record_a.postal_code_5 <> record_b.postal_code_5,
            false
        ) as is_address_conflict,
        coalesce(record_a.phone_e164_valid <> record_b.phone_e164_valid, false) as is_phone_conflict,
        coalesce(record_a.email_local_part <> record_b.email_local_part, false) as is_email_conflict
    from candidate_pairs
    inner join patients as record_a
        on candidate_pairs.patient_key_a = record_a.patient_key
    inner join patients as record_b
        on candidate_pairs.patient_key_b = record_b.patient_key
    left join names_compared as first_names
        on
            record_a.first_name_normalised = first_names.name_a
            and record_b.first_name_normalised = first_names.name_b
    left join names_compared as last_names
        on
            record_a.last_name_normalised = last_names.name_a
            and record_b.last_name_normalised = last_names.name_b
),

scored as (
    select
        *,
        is_first_name_equal or is_first_name_nickname or is_first_name_one_edit as is_first_name_compatible,
        is_birth_date_equal
        or is_birth_date_day_month_swapped
        or is_birth_date_one_part_differs as is_birth_date_compatible,
        case
            when is_birth_date_equal then {{ points['birth_date_equal'] }}
            when is_birth_date_day_month_swapped then {{ points['birth_date_day_month_swapped'] }}
            when is_birth_date_one_part_differs then {{ points['birth_date_one_part_differs'] }}
            else {{ points['birth_date_differs'] }}
        end
        + case
            when is_first_name_equal then {{ points['first_name_equal'] }}
            when is_first_name_nickname then {{ points['first_name_nickname'] }}
            when is_first_name_one_edit then {{ points['first_name_one_edit'] }}
            when is_first_initial_equal then {{ points['first_initial_only'] }}
            else {{ points['first_name_differs'] }}
        end
        + case
            when is_last_name_equal then {{ points['last_name_equal'] }}
            when is_last_name_similar then {{ points['last_name_similar'] }}
            else {{ points['last_name_differs'] }}
        end
        + case when is_sex_conflict then {{ points['sex_differs'] }} else 0 end
        + case when is_phone_equal then {{ points['phone_equal'] }} else 0 end
        + case
            when is_email_equal then {{ points['email_equal'] }}
            when is_email_local_part_equal then {{ points['email_local_part_only'] }}
            else 0
        end
        + case
            when is_address_equal then {{ points['address_equal'] }}
            when is_address_conflict then {{ points['address_conflict'] }}
            when is_postal_code_equal then {{ points['postal_code_only'] }}
            else 0
        end
        + case when is_phone_conflict then {{ points['phone_conflict'] }} else 0 end
        + case when is_email_conflict then {{ points['email_conflict'] }} else 0 end as match_score
    from compared
),

decided as (
    select
        *,
        case
            when is_sex_conflict then 'sex_differs'
            when not is_birth_date_compatible then 'birth_dates_differ'
            when not is_first_name_compatible then 'first_names_differ'
            when
                is_first_name_equal and is_last_name_equal and is_birth_date_equal
                and match_score >= {{ match_threshold }}
                then 'exact_name_birth_date'
            when is_email_equal and is_birth_date_equal then 'email_birth_date'
            when is_phone_equal and is_birth_date_equal then 'phone_birth_date'
            when match_score >= {{ match_threshold }} then 'fuzzy_score'
            else 'score_below_threshold'
        end as decision_reason
    from scored
),

final as (
    select
        patient_key_a,
        patient_key_b,
        blocked_on,
        is_same_source_location,
        is_birth_date_equal,
        is_birth_date_day_month_swapped,
        is_birth_date_one_part_differs,
        is_first_name_equal,
        is_first_name_nickname,
        is_first_name_one_edit,
        is_first_initial_equal,
        is_last_name_equal,
        is_last_name_similar,
        is_sex_conflict,
        is_phone_equal,
        is_email_equal,
        is_email_local_part_equal,
        is_address_equal,
        is_postal_code_equal,
        is_address_conflict,
        is_phone_conflict,
        is_email_conflict,
        is_first_name_compatible,
        is_birth_date_compatible,
        cast(match_score as numeric(6, 2)) as match_score,
        case
            when
                decision_reason in ('exact_name_birth_date', 'email_birth_date', 'phone_birth_date', 'fuzzy_score')
                then 'match'
            when
                decision_reason = 'score_below_threshold' and match_score >= {{ review_threshold }}
                then 'review'
            else 'non_match'
        end as decision,
        decision_reason,
        {# The evidence in words, strongest first: what a data steward reads. #}
        substr({{ dbt.concat([
            "case when is_birth_date_equal then '+birth_date' when is_birth_date_day_month_swapped"
            ~ " then '+birth_date_day_month_swapped' when is_birth_date_one_part_differs"
            ~ " then '+birth_date_one_part_differs' else '' end",
            "case when is_first_name_equal then '+first_name' when is_first_name_nickname"
            ~ " then '+first_name_nickname' when is_first_name_one_edit then '+first_name_one_edit' else '' end",
            "case when is_last_name_equal then '+last_name' when is_last_name_similar"
            ~ " then '+last_name_similar' else '' end",
            "case when is_email_equal then '+email' when is_email_local_part_equal"
            ~ " then '+email_local_part' else '' end",
            "case when is_phone_equal then '+phone' else '' end",
            "case when is_address_equal then '+address' else '' end",
        ]) }}, 2) as match_evidence,
        {{ build_started_at() }} as built_at
    from decided
)

select * from final
