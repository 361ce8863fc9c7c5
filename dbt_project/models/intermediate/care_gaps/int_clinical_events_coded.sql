-- Clinical events matched to the value sets of the rule catalog, by code (never
-- by display text): exact codes by equality, prefix codes (match = 'prefix',
-- e.g. ICD-10-CM E11 for every type 2 diabetes code) by the code's leading
-- characters. Prefixes are matched with an equi-join on left(code, n), so the
-- match stays a hash join however many events there are.
with events as (
    select * from {{ ref('int_clinical_events_unioned') }}
),

value_set_codes as (
    select * from {{ ref('value_sets') }}
),

normalised_codes as (
    select
        value_set_id,
        lower(coalesce(match, 'exact')) as match_type,
        case
            when upper(code_system) in ('CPT', 'HCPCS', 'CDT') then 'HCPCS'
            when upper(code_system) in ('SNOMED', 'SNOMEDCT', 'SNOMED-CT', 'SCT') then 'SNOMED'
            when upper(code_system) in ('ICD10CM', 'ICD10', 'ICD-10-CM') then 'ICD10CM'
            else upper(code_system)
        end as code_system_key,
        upper(replace(trim(code), '.', '')) as code_key
    from value_set_codes
),

exact_codes as (
    select distinct
        value_set_id,
        code_system_key,
        code_key
    from normalised_codes
    where match_type = 'exact'
),

prefix_codes as (
    select distinct
        value_set_id,
        code_system_key,
        code_key,
        length(code_key) as prefix_length
    from normalised_codes
    where match_type = 'prefix'
),

prefix_lengths as (
    select distinct
        code_system_key,
        prefix_length
    from prefix_codes
),

exact_matches as (
    select
        events.event_id,
        exact_codes.value_set_id
    from events
    inner join exact_codes
        on
            events.code_system_key = exact_codes.code_system_key
            and events.code_key = exact_codes.code_key
),

event_prefixes as (
    select
        events.event_id,
        events.code_system_key,
        prefix_lengths.prefix_length,
        left(events.code_key, prefix_lengths.prefix_length) as code_prefix
    from events
    inner join prefix_lengths
        on events.code_system_key = prefix_lengths.code_system_key
),

prefix_matches as (
    select
        event_prefixes.event_id,
        prefix_codes.value_set_id
    from event_prefixes
    inner join prefix_codes
        on
            event_prefixes.code_system_key = prefix_codes.code_system_key
            and event_prefixes.prefix_length = prefix_codes.prefix_length
            and event_prefixes.code_prefix = prefix_codes.code_key
),

matches as (
    select
        event_id,
        value_set_id
    from exact_matches
    union
    select
        event_id,
        value_set_id
    from prefix_matches
),

final as (
    select
        events.event_id,
        matches.value_set_id,
        events.event_kind,
        events.person_id,
        events.event_date,
        events.active_until,
        events.code_system,
        events.code,
        events.value_numeric,
        events.location_id
    from matches
    inner join events
        on matches.event_id = events.event_id
)

select * from final
