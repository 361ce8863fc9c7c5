-- The quality gate creates ops.quality_results the first time it runs, so on a
-- fresh warehouse the table may not exist yet: then this view is empty, with the
-- same columns, and the trend report builds with no rows.
{%- set results = source('ops_outreach', 'quality_results') %}
{%- set results_relation = adapter.get_relation(
    database=results.database,
    schema=results.schema,
    identifier=results.identifier,
) if execute else none %}

with source as (
    {% if results_relation is not none -%}
        select
            dag_run_id,
            as_of,
            suite,
            expectation,
            severity,
            success,
            observed_value,
            location_id,
            recorded_at
        from {{ results }}
    {%- else -%}
        select
            cast(null as text) as dag_run_id,
            cast(null as date) as as_of,
            cast(null as text) as suite,
            cast(null as text) as expectation,
            cast(null as text) as severity,
            cast(null as boolean) as success,
            cast(null as numeric) as observed_value,
            cast(null as text) as location_id,
            cast(null as timestamp) as recorded_at
        where 1 = 0
    {%- endif %}
),

renamed as (
    select
        dag_run_id,
        as_of as run_as_of,
        suite,
        expectation,
        severity,
        success,
        observed_value,
        location_id,
        recorded_at
    from source
)

select * from renamed
