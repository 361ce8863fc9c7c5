-- Invariant: a candidate's preferred channel is one they can be reached on.
select
    candidates.person_id,
    candidates.preferred_channel
from {{ ref('outreach_candidates') }} as candidates
where position(candidates.preferred_channel in candidates.contactable_channels) = 0
