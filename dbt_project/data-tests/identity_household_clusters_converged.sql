-- Every household link lies inside one household. Fails if the bounded label
-- propagation in int_households stopped before a household converged: raise `passes`.
with links as (
    select * from {{ ref('int_household_links') }}
),

households as (
    select * from {{ ref('int_households') }}
),

final as (
    select
        links.link_type,
        links.person_id_a,
        links.person_id_b
    from links
    inner join households as households_a
        on links.person_id_a = households_a.person_id
    inner join households as households_b
        on links.person_id_b = households_b.person_id
    where households_a.household_id <> households_b.household_id
)

select * from final
