-- Practice type of every location a record points at: dental when most of its
-- coded visits are dental (CDT codes or the dental encounter class), else from
-- its providers' specialties, else from its name; medical otherwise.
with locations as (
    select * from {{ ref('stg_emr__locations') }}
),

encounters as (
    select * from {{ ref('stg_emr__encounters') }}
),

providers as (
    select * from {{ ref('stg_emr__providers') }}
),

patients as (
    select * from {{ ref('stg_emr__patients') }}
),

appointments as (
    select * from {{ ref('stg_emr__appointments') }}
),

encounter_mix as (
    select
        source_system,
        location_id,
        count(*) as encounter_count,
        sum(
            case
                when upper(visit_type_system) = 'CDT' or lower(encounter_class) = 'dental' then 1
                else 0
            end
        ) as dental_encounter_count
    from encounters
    group by source_system, location_id
),

provider_mix as (
    select
        source_system,
        location_id,
        count(*) as provider_count,
        sum(
            case
                when
                    lower(specialty) like '%dental%'
                    or lower(specialty) like '%dentist%'
                    or lower(specialty) like '%hygien%'
                    or lower(specialty) like '%orthodon%'
                    or lower(specialty) like '%periodon%'
                    or lower(specialty) like '%oral%'
                    then 1
                else 0
            end
        ) as dental_provider_count
    from providers
    group by source_system, location_id
),

location_names as (
    select
        source_system,
        location_id,
        max(name) as location_name
    from locations
    group by source_system, location_id
),

-- Each source's locations grouped on their own (a handful of rows each) before the
-- union: a union of the raw rows would sort every encounter, appointment and patient.
referenced_locations as (
    select
        source_system,
        location_id
    from location_names
    union
    select
        source_system,
        location_id
    from encounter_mix
    union
    select
        source_system,
        location_id
    from appointments
    group by source_system, location_id
    union
    select
        source_system,
        location_id
    from patients
    group by source_system, location_id
),

final as (
    select
        referenced_locations.source_system,
        referenced_locations.location_id,
        location_names.location_name,
        coalesce(encounter_mix.encounter_count, 0) as encounter_count,
        coalesce(encounter_mix.dental_encounter_count, 0) as dental_encounter_count,
        case
            when encounter_mix.encounter_count > 0
                then
                    case
                        when encounter_mix.dental_encounter_count * 2 > encounter_mix.encounter_count then 'dental'
                        else 'medical'
                    end
            when provider_mix.provider_count > 0
                then
                    case
                        when provider_mix.dental_provider_count * 2 > provider_mix.provider_count then 'dental'
                        else 'medical'
                    end
            when
                lower(location_names.location_name) like '%dental%'
                or lower(location_names.location_name) like '%dentist%'
                or lower(location_names.location_name) like '%orthodont%'
                then 'dental'
            else 'medical'
        end as practice_type
    from referenced_locations
    left join encounter_mix
        on
            referenced_locations.source_system = encounter_mix.source_system
            and referenced_locations.location_id = encounter_mix.location_id
    left join provider_mix
        on
            referenced_locations.source_system = provider_mix.source_system
            and referenced_locations.location_id = provider_mix.location_id
    left join location_names
        on
            referenced_locations.source_system = location_names.source_system
            and referenced_locations.location_id = location_names.location_id
    where referenced_locations.location_id is not null
)

select * from final
