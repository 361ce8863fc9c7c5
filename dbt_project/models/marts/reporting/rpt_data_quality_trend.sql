-- The quality gate's results over time: per as-of date and suite, how many
-- expectations were checked and how many failed, by severity, and how many
-- locations a location-scoped expectation failed for. A date the gate ran more
-- than once (a re-run) counts its latest run.
with results as (
    select * from {{ ref('stg_ops__quality_results') }}
    where run_as_of <= {{ as_of_date() }}
),

runs as (
    select
        run_as_of,
        dag_run_id,
        row_number() over (
            partition by run_as_of
            order by max(recorded_at) desc, dag_run_id desc
        ) as run_rank
    from results
    group by run_as_of, dag_run_id
),

latest_results as (
    select results.*
    from results
    inner join runs
        on
            results.dag_run_id = runs.dag_run_id
            and results.run_as_of = runs.run_as_of
    where runs.run_rank = 1
),

final as (
    select
        run_as_of,
        suite,
        min(dag_run_id) as dag_run_id,
        count(distinct case when location_id is null then expectation end) as expectations,
        sum(case when location_id is null and not success then 1 else 0 end) as failures,
        sum(case when location_id is null and not success and severity = 'critical' then 1 else 0 end)
            as critical_failures,
        sum(case when location_id is null and not success and severity = 'warning' then 1 else 0 end)
            as warning_failures,
        count(distinct case when location_id is not null and not success then location_id end)
            as locations_failing,
        sum(case when location_id is null and not success and severity = 'critical' then 1 else 0 end) = 0
            as suite_passed
    from latest_results
    group by run_as_of, suite
)

select * from final
