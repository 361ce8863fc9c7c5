{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        on_schema_change='append_new_columns',
        meta={'tests_read': 'rows_this_run_wrote'},
        pre_hook=["{{ households_forget_people_to_regroup(this) }}"],
        post_hook=[
            "create index if not exists int_households_person_idx on {{ this }} (person_id)",
            "create index if not exists int_households_household_idx on {{ this }} (household_id)",
            "{{ remember_definition(this, households_definition) }}",
        ],
    )
}}

-- One row per person with the household they belong to, for household-level contact
-- caps: the connected components of int_household_links (people linked directly or
-- through others), found by bounded label propagation (identity_connected_components);
-- the data test identity_household_clusters_converged proves every run exact.
-- Incremental by household (macros/households_incremental.sql): a night groups again the
-- people whose links changed and the households they were in; every other row stands.
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

links as (
    select * from {{ ref('int_household_links') }}
    {{ households_people_tonight('person_id_a') }}
),

nodes as (
    select distinct person_id as node_id from identified
    {{ households_people_tonight('person_id') }}
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

signatures as (
    {{ household_links_signatures('links') }}
),

final as (
    select
        households.node_id as person_id,
        {{ dbt.hash(dbt.concat(["'household|'", "households.component_id"])) }} as household_id,
        count(*) over (partition by households.component_id) as household_size,
        link_types_per_person.linked_by,
        signatures.links_signature,
        {{ build_started_at() }} as built_at
    from households
    left join link_types_per_person
        on households.node_id = link_types_per_person.person_id
    left join signatures
        on households.node_id = signatures.person_id
)

select * from final
