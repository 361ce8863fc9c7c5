-- Each person's most recent completed visit on or before the as-of date, overall
-- and per practice type (medical, dental), with where it was. A visit after the
-- as-of date never counts: the pipeline replays history.
with visits as (
    select * from {{ ref('int_completed_visits') }}
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

visits_to_date as (
    select visits.*
    from visits
    cross join run_parameters
    where visits.visit_date <= run_parameters.as_of_date
),

ranked as (
    select
        person_id,
        visit_date,
        location_id,
        practice_type,
        row_number() over (
            partition by person_id
            order by visit_date desc, location_id asc
        ) as overall_rank,
        row_number() over (
            partition by person_id, practice_type
            order by visit_date desc, location_id asc
        ) as practice_type_rank
    from visits_to_date
),

final as (
    select
        person_id,
        max(case when overall_rank = 1 then visit_date end) as last_visit_date,
        max(case when overall_rank = 1 then location_id end) as last_visit_location_id,
        max(
            case when practice_type = 'medical' and practice_type_rank = 1 then visit_date end
        ) as last_medical_visit_date,
        max(
            case when practice_type = 'medical' and practice_type_rank = 1 then location_id end
        ) as last_medical_location_id,
        max(
            case when practice_type = 'dental' and practice_type_rank = 1 then visit_date end
        ) as last_dental_visit_date,
        max(
            case when practice_type = 'dental' and practice_type_rank = 1 then location_id end
        ) as last_dental_location_id,
        count(*) as visits_to_date
    from ranked
    group by person_id
)

select * from final
