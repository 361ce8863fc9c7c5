{#- int_households, incremental by household.

    A night groups again only the households whose links can have changed, and every other row
    stands. Each row keeps links_signature, a hash of the person's links (type and the other
    person of each). A person whose signature tonight differs from the stored one (a new link,
    a lost link, no links any more), who is new, or who is no longer a person, is grouped again
    with every member of the household they were in: a lost link can split it, a new link joins
    the other person's household, whose member's signature changed too. That set is closed
    under tonight's links (an unchanged link joins two members of one stored household), so
    its components are exactly a full build's. The households are rebuilt whole on a first
    build, with --full-refresh, or when the model's SQL changed (its hash is the table's
    comment). -#}

{#- Each linked person's links as one hash, from `links` (int_household_links or a part of it
    that holds every link of the people it covers). -#}
{% macro household_links_signatures(links) -%}
    select
        person_links.person_id,
        {{ dbt.hash("string_agg(person_links.link_type || '>' || person_links.other_person_id, ',' order by person_links.link_type, person_links.other_person_id)") }} as links_signature
    from (
        select
            person_id_a as person_id,
            person_id_b as other_person_id,
            link_type
        from {{ links }}
        union all
        select
            person_id_b as person_id,
            person_id_a as other_person_id,
            link_type
        from {{ links }}
    ) as person_links
    group by person_links.person_id
{%- endmacro %}

{% macro households_definition() -%}
    {{- return('definition ' ~ local_md5(model.raw_code)) -}}
{%- endmacro %}

{#- True when tonight's run must rebuild the households whole (see above). -#}
{% macro households_rebuilt_whole(relation) -%}
    {%- if not execute or relation is none or not is_incremental() -%}
        {{- return(true) -}}
    {%- endif -%}
    {{- return(stored_table_comment(relation) != households_definition()) -}}
{%- endmacro %}

{#- Pre-hook: the people grouped again tonight, in a temporary table the model reads, and their
    stored rows deleted (or every row, for a whole rebuild). -#}
{% macro households_forget_people_to_regroup(relation) -%}
    {%- if is_incremental() -%}
        {%- if households_rebuilt_whole(relation) -%}
            truncate {{ relation }}
        {%- else -%}
            drop table if exists pg_temp.households_people_tonight;
            create temporary table households_people_tonight as
            with tonight as (
                select
                    nodes.person_id,
                    signatures.links_signature
                from (select distinct identified.person_id from {{ ref('int_patients_identified') }} as identified) as nodes
                left join ({{ household_links_signatures(ref('int_household_links')) }}) as signatures
                    on nodes.person_id = signatures.person_id
            ),

            changed as (
                select coalesce(tonight.person_id, held.person_id) as person_id
                from tonight
                full outer join {{ relation }} as held
                    on tonight.person_id = held.person_id
                where
                    tonight.person_id is null
                    or held.person_id is null
                    or tonight.links_signature is distinct from held.links_signature
            )

            select changed.person_id
            from changed
            union
            select members.person_id
            from changed
            inner join {{ relation }} as held
                on changed.person_id = held.person_id
            inner join {{ relation }} as members
                on held.household_id = members.household_id;
            analyze pg_temp.households_people_tonight;
            delete from {{ relation }}
            where person_id in (select people.person_id from pg_temp.households_people_tonight as people)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The model's filter: on an incremental night, only the people grouped again tonight. -#}
{% macro households_people_tonight(person_id) -%}
    {%- if not households_rebuilt_whole(this) -%}
        where {{ person_id }} in (select people.person_id from pg_temp.households_people_tonight as people)
    {%- endif -%}
{%- endmacro %}
