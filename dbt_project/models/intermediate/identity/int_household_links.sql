{#- A key shared by more people than this is not a household: a care home's address,
    a clinic's front-desk phone, a shelter. Such keys link nobody. -#}
{%- set max_people = {'address': 12, 'phone': 8, 'account': 20} -%}

-- The links that put two people in one household: a shared normalised address line
-- and postal code, a shared valid phone, a shared source account (household_key,
-- scoped to its source location), or one being the other's guarantor. A shared key
-- links each holder to the key's smallest person_id (a star: same components, fewer
-- rows than all pairs).
with identified as (
    select * from {{ ref('int_patients_identified') }}
),

patients as (
    select * from {{ ref('int_patients_normalised') }}
),

records as (
    select
        identified.person_id,
        patients.source_system,
        patients.source_location_id,
        patients.patient_id,
        patients.address_normalised,
        patients.postal_code_5,
        patients.phone_e164_valid,
        patients.household_key,
        patients.guarantor_id
    from identified
    inner join patients
        on identified.patient_key = patients.patient_key
),

shared_keys as (
    select
        'address' as link_type,
        {{ dbt.concat(["address_normalised", "'|'", "postal_code_5"]) }} as link_key,
        person_id
    from records
    where address_normalised is not null and postal_code_5 is not null
    union
    select
        'phone' as link_type,
        phone_e164_valid as link_key,
        person_id
    from records
    where phone_e164_valid is not null
    union
    select
        'account' as link_type,
        {{ dbt.concat(["source_system", "'|'", "source_location_id", "'|'", "household_key"]) }} as link_key,
        person_id
    from records
    where household_key is not null
),

-- Each holder of a key with the key's anchor (its smallest person_id) and its number of
-- holders, from one sort by key (a group-by joined back to every holder costs twice that).
shared_key_groups as (
    select
        link_type,
        person_id,
        min(person_id) over (partition by link_type, link_key) as anchor_person_id,
        count(*) over (partition by link_type, link_key) as people
    from shared_keys
),

links as (
    select
        link_type,
        person_id as person_id_a,
        anchor_person_id as person_id_b
    from shared_key_groups
    where
        person_id <> anchor_person_id
        and (
            (link_type = 'address' and people <= {{ max_people['address'] }})
            or (link_type = 'phone' and people <= {{ max_people['phone'] }})
            or (link_type = 'account' and people <= {{ max_people['account'] }})
        )
    union
    select
        'guarantor' as link_type,
        dependants.person_id as person_id_a,
        guarantors.person_id as person_id_b
    from records as dependants
    inner join records as guarantors
        on
            dependants.source_system = guarantors.source_system
            and dependants.source_location_id = guarantors.source_location_id
            and dependants.guarantor_id = guarantors.patient_id
    where dependants.person_id <> guarantors.person_id
),

final as (
    select
        link_type,
        person_id_a,
        person_id_b
    from links
)

select * from final
