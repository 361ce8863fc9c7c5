{{ config(severity='warn') }}
-- No person holds two records that were compared and found to be different people
-- (different first names on one birth date, a parent and child, an M/F conflict):
-- such a person was chained together through a third record (A~B, B~C, A!~C).
-- Warn, with the pairs to review in int_patient_match_pairs.
with match_pairs as (
    select * from {{ ref('int_patient_match_pairs') }}
),

identified as (
    select * from {{ ref('int_patients_identified') }}
),

final as (
    select
        match_pairs.patient_key_a,
        match_pairs.patient_key_b,
        match_pairs.decision_reason
    from match_pairs
    inner join identified as identified_a
        on match_pairs.patient_key_a = identified_a.patient_key
    inner join identified as identified_b
        on match_pairs.patient_key_b = identified_b.patient_key
    where
        match_pairs.decision_reason in ('sex_differs', 'birth_dates_differ', 'first_names_differ')
        and identified_a.person_id = identified_b.person_id
)

select * from final
