-- Every pair decided 'match' lies inside one person. Fails if the bounded label
-- propagation in int_patients_identified stopped before a cluster converged (a chain
-- of matches longer than its passes): raise `passes` there.
with match_pairs as (
    select * from {{ ref('int_patient_match_pairs') }}
),

identified as (
    select * from {{ ref('int_patients_identified') }}
),

final as (
    select
        match_pairs.patient_key_a,
        match_pairs.patient_key_b
    from match_pairs
    inner join identified as identified_a
        on match_pairs.patient_key_a = identified_a.patient_key
    inner join identified as identified_b
        on match_pairs.patient_key_b = identified_b.patient_key
    where
        match_pairs.decision = 'match'
        and identified_a.person_id <> identified_b.person_id
)

select * from final
