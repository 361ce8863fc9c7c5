-- Invariant: nobody with a suppression reason is an outreach candidate.
select
    candidates.person_id,
    suppressions.reason_code
from {{ ref('outreach_candidates') }} as candidates
inner join {{ ref('outreach_suppressions') }} as suppressions
    on candidates.person_id = suppressions.person_id
