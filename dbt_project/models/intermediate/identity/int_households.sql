-- One row per person with the household they belong to, for household-level contact
-- caps: the connected components of int_household_links (people linked directly or
-- through others), found by bounded label propagation (identity_connected_components);
-- the data test identity_household_clusters_converged proves every run exact.
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

links as (
    select * from {{ ref('int_household_links') }}
),

nodes as (
    select distinct person_id as node_id from identified
),

edges as (
    select
        person_id_a as node_a,
        person_id_b as node_b
    from links
),

{{ identity_connected_components('nodes', 'edges', 'households', passes=6) }},

link_types_per_person as (
    select
        person_id,
        {{ dbt.listagg('link_type', "'+'", 'order by link_type') }} as linked_by
    from (
        select
            person_id_a as person_id,
            link_type
        from links
        union
        select
            person_id_b as person_id,
            link_type
        from links
    ) as person_links
    group by person_id
),

final as (
    select
        households.node_id as person_id,
        {{ dbt.hash(dbt.concat(["'household|'", "households.component_id"])) }} as household_id,
        count(*) over (partition by households.component_id) as household_size,
        link_types_per_person.linked_by
    from households
    left join link_types_per_person
        on households.node_id = link_types_per_person.person_id
)

select * from final
