{#- Connected components in plain SQL, as a chain of CTEs (dbt has no loops at run time).

    Emits CTEs ending in `<output>` (node_id, component_id), where component_id is the
    smallest node_id reachable from the node. `nodes` is a CTE with node_id; `edges` a CTE
    with node_a, node_b (undirected). Each pass takes, for every node, the minimum of its
    own label, its neighbours' labels and its label's label (pointer jumping), so after
    n passes the labels are exact for every component whose diameter is at most n (and
    most larger ones). Identity clusters are 2-5 records and households a handful of
    people, so 4-6 passes are exact in practice; the data tests
    identity_person_clusters_converged / identity_household_clusters_converged fail
    loudly if a component ever needs more. -#}
{% macro identity_connected_components(nodes, edges, output, passes=4) -%}
{{ output }}_edges as (
    select
        node_a as node_id,
        node_b as neighbour_id
    from {{ edges }}
    union
    select
        node_b as node_id,
        node_a as neighbour_id
    from {{ edges }}
),

{#- Only nodes with an edge take part in the passes: every other node is its own
    component (most patient records and most people), and leaving them out makes each
    pass scale with the matches instead of with all records. -#}
{{ output }}_pass_0 as (
    select distinct
        node_id,
        node_id as component_id
    from {{ output }}_edges
),
{% for pass_number in range(1, passes + 1) %}
{%- set previous = output ~ '_pass_' ~ (pass_number - 1) %}
{{ output }}_pass_{{ pass_number }} as (
    select
        candidates.node_id,
        min(candidates.component_id) as component_id
    from (
        select
            {{ previous }}.node_id,
            {{ previous }}.component_id
        from {{ previous }}
        union all
        select
            {{ output }}_edges.node_id,
            {{ previous }}.component_id
        from {{ output }}_edges
        inner join {{ previous }}
            on {{ output }}_edges.neighbour_id = {{ previous }}.node_id
        union all
        select
            {{ previous }}.node_id,
            label_of_label.component_id
        from {{ previous }}
        inner join {{ previous }} as label_of_label
            on {{ previous }}.component_id = label_of_label.node_id
    ) as candidates
    group by candidates.node_id
),
{% endfor %}
{{ output }} as (
    select
        {{ nodes }}.node_id,
        coalesce({{ output }}_pass_{{ passes }}.component_id, {{ nodes }}.node_id) as component_id
    from {{ nodes }}
    left join {{ output }}_pass_{{ passes }}
        on {{ nodes }}.node_id = {{ output }}_pass_{{ passes }}.node_id
)
{%- endmacro %}
