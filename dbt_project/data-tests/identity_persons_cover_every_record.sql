-- Every staged patient record is in the identity map exactly once, and every person
-- has at least one record: nothing is lost or invented between staging and the marts.
-- (Counts, not an anti-join, against the staging view: a view over a freshly loaded
-- raw layer has no statistics and plans badly in joins.)
with patients as (
    select * from {{ ref('stg_emr__patients') }}
),

person_sources as (
    select * from {{ ref('person_sources') }}
),

persons as (
    select * from {{ ref('persons') }}
),

record_counts as (
    select
        'staged_records_not_mapped_once' as problem,
        (select count(*) from patients) as staged_records,
        (select count(distinct patient_key) from person_sources) as mapped_records
),

persons_without_records as (
    select
        'person_without_records' as problem,
        count(*) as staged_records,
        0 as mapped_records
    from persons
    left join person_sources
        on persons.person_id = person_sources.person_id
    where person_sources.person_id is null
    having count(*) > 0
),

final as (
    select * from record_counts
    where staged_records <> mapped_records
    union all
    select * from persons_without_records
)

select * from final
