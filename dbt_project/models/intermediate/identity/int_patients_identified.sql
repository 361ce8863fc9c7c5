-- Interface (kept stable for care gaps and outreach): one row per staged patient
-- record with the person it belongs to, and the rule, score and evidence of the
-- strongest match that put it there.
--
-- Persons are the connected components of the pairs decided 'match' in
-- int_patient_match_pairs (A~B and B~C make one person of A, B and C). The component
-- is found by bounded label propagation (see the identity_connected_components macro);
-- the data test identity_person_clusters_converged proves every run exact. person_id
-- is a hash of the smallest patient_key of the component: stable while that record
-- stays in the person.
with patients as (
    select * from {{ ref('int_patients_normalised') }}
),

match_pairs as (
    select * from {{ ref('int_patient_match_pairs') }}
),

nodes as (
    select patient_key as node_id from patients
),

matched_edges as (
    select
        patient_key_a as node_a,
        patient_key_b as node_b
    from match_pairs
    where decision = 'match'
),

{{ identity_connected_components('nodes', 'matched_edges', 'components', passes=4) }},

matches_per_record as (
    select
        patient_key_a as patient_key,
        patient_key_b as matched_patient_key,
        decision_reason,
        match_score,
        match_evidence
    from match_pairs
    where decision = 'match'
    union all
    select
        patient_key_b as patient_key,
        patient_key_a as matched_patient_key,
        decision_reason,
        match_score,
        match_evidence
    from match_pairs
    where decision = 'match'
),

strongest_match as (
    select
        *,
        row_number() over (
            partition by patient_key
            order by match_score desc, matched_patient_key asc
        ) as match_rank
    from matches_per_record
),

final as (
    select
        patients.patient_key,
        patients.source_system,
        patients.source_location_id,
        patients.patient_id,
        patients.location_id,
        {{ dbt.hash(dbt.concat(["'person|'", "components.component_id"])) }} as person_id,
        coalesce(strongest_match.decision_reason, 'single_record') as match_rule,
        strongest_match.match_score,
        strongest_match.matched_patient_key,
        strongest_match.match_evidence
    from patients
    inner join components
        on patients.patient_key = components.node_id
    left join strongest_match
        on
            patients.patient_key = strongest_match.patient_key
            and strongest_match.match_rank = 1
)

select * from final
