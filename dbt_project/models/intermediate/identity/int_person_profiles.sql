-- One row per person: the contact and demographic facts outreach uses, chosen across
-- all of the person's patient records. "Most recent" means the record with the latest
-- visit, then the latest extract: the practice that saw the patient last is likeliest
-- to hold current details. Phone and email are each the most recent VALID one across
-- records (a duplicate registered elsewhere often has the number the home record lacks);
-- a person is deceased if any record says so. persons adds the household; it is kept
-- apart so that the care-gap chain, which needs no household, does not wait for them.
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

patients as (
    select * from {{ ref('int_patients_normalised') }}
),

last_visits as (
    select * from {{ ref('int_patient_last_visits') }}
),

locations as (
    select * from {{ ref('stg_emr__locations') }}
),

records as (
    select
        identified.person_id,
        patients.*,
        row_number() over (
            partition by identified.person_id
            order by
                last_visits.last_encounter_at desc nulls last,
                patients.extract_date desc,
                patients.patient_key asc
        ) as recency_rank
    from identified
    inner join patients
        on identified.patient_key = patients.patient_key
    left join last_visits
        on
            patients.source_system = last_visits.source_system
            and patients.source_location_id = last_visits.source_location_id
            and patients.patient_id = last_visits.patient_id
),

best_phones as (
    select
        person_id,
        phone_e164,
        row_number() over (partition by person_id order by recency_rank) as phone_rank
    from records
    where phone_is_valid and phone_e164 is not null
),

best_emails as (
    select
        person_id,
        email,
        row_number() over (partition by person_id order by recency_rank) as email_rank
    from records
    where email_is_valid and email is not null
),

person_facts as (
    select
        person_id,
        count(*) as patient_record_count,
        count(distinct {{ dbt.concat(["source_system", "'|'", "source_location_id"]) }}) as source_location_count,
        {{ dbt.bool_or('coalesce(deceased, false) or deceased_date is not null') }} as is_deceased,
        max(deceased_date) as deceased_date
    from records
    group by person_id
),

final as (
    select
        records.person_id,
        records.location_id as home_location_id,
        coalesce(locations.timezone, 'UTC') as timezone,
        records.birth_date,
        records.sex,
        coalesce(nullif(lower(split_part(records.language, '-', 1)), ''), 'en') as language,  -- noqa: RF04
        best_phones.phone_e164,
        best_phones.phone_e164 is not null as phone_is_valid,
        coalesce(best_emails.email, records.email) as email,
        best_emails.email is not null as email_is_valid,
        person_facts.is_deceased,
        person_facts.deceased_date,
        person_facts.patient_record_count,
        person_facts.source_location_count
    from records
    inner join person_facts
        on records.person_id = person_facts.person_id
    left join best_phones
        on
            records.person_id = best_phones.person_id
            and best_phones.phone_rank = 1
    left join best_emails
        on
            records.person_id = best_emails.person_id
            and best_emails.email_rank = 1
    left join locations
        on
            records.location_id = locations.location_id
            and records.source_system = locations.source_system
    where records.recency_rank = 1
)

select * from final
