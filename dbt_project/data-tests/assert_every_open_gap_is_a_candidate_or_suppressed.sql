-- Invariant: every person with an open care gap is either a candidate or has
-- at least one recorded suppression reason (nobody falls through silently).
with open_gap_people as (
    select distinct person_id from {{ ref('care_gaps') }}
    where status = 'open'
),

accounted as (
    select person_id from {{ ref('outreach_candidates') }}
    union
    select person_id from {{ ref('outreach_suppressions') }}
)

select open_gap_people.person_id
from open_gap_people
left join accounted on open_gap_people.person_id = accounted.person_id
where accounted.person_id is null
