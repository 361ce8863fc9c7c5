-- Which pairs of distinct normalised names may be the same name: a known nickname
-- (bob/robert, and two nicknames of one formal name: bill/will), or one edit apart.
--
-- "One edit apart" without Levenshtein (no fuzzystrmatch), exactly Damerau distance 1:
-- every name has variants: itself, one per deleted letter (with its position) and one
-- per swapped pair of neighbouring letters. Two names are one edit apart when
--   a deletion of one is the other (one letter inserted or dropped: joan/jon),
--   their deletions at the same position agree (one letter substituted: jon/jan),
--   a swap of one is the other (neighbours transposed: valentina/valnetina).
-- Only names of three or more letters take part (two-letter names are near everything).
-- Computed over the distinct names only, so it stays small at any scale.
with patients as (
    select * from {{ ref('int_patients_normalised') }}
),

nicknames as (
    select * from {{ ref('name_nicknames') }}
),

positions as (
    {{ identity_positions(40) }}
),

distinct_names as (
    select first_name_normalised as name_value
    from patients
    where first_name_normalised is not null
    union
    select last_name_normalised as name_value
    from patients
    where last_name_normalised is not null
),

name_variants as (
    select
        name_value,
        'self' as variant_kind,
        0 as char_position,
        name_value as variant
    from distinct_names
    where {{ dbt.length('name_value') }} >= 3
    union all
    select
        distinct_names.name_value,
        'deletion' as variant_kind,
        positions.char_position,
        {{ dbt.concat([
            "substr(distinct_names.name_value, 1, positions.char_position - 1)",
            "substr(distinct_names.name_value, positions.char_position + 1)",
        ]) }} as variant
    from distinct_names
    inner join positions
        on positions.char_position <= {{ dbt.length('distinct_names.name_value') }}
    where {{ dbt.length('distinct_names.name_value') }} >= 3
    union all
    select
        distinct_names.name_value,
        'transposition' as variant_kind,
        positions.char_position,
        {{ dbt.concat([
            "substr(distinct_names.name_value, 1, positions.char_position - 1)",
            "substr(distinct_names.name_value, positions.char_position + 1, 1)",
            "substr(distinct_names.name_value, positions.char_position, 1)",
            "substr(distinct_names.name_value, positions.char_position + 2)",
        ]) }} as variant
    from distinct_names
    inner join positions
        on positions.char_position < {{ dbt.length('distinct_names.name_value') }}
    where {{ dbt.length('distinct_names.name_value') }} >= 3
),

one_edit_pairs as (
    select distinct
        variants_a.name_value as name_a,
        variants_b.name_value as name_b
    from name_variants as variants_a
    inner join name_variants as variants_b
        on
            variants_a.variant = variants_b.variant
            and variants_a.name_value <> variants_b.name_value
    where
        (variants_a.variant_kind = 'self' and variants_b.variant_kind in ('deletion', 'transposition'))
        or (variants_a.variant_kind in ('deletion', 'transposition') and variants_b.variant_kind = 'self')
        or (
            variants_a.variant_kind = 'deletion'
            and variants_b.variant_kind = 'deletion'
            and variants_a.char_position = variants_b.char_position
        )
),

nickname_groups as (
    select
        {{ identity_normalise_name('formal_name') }} as group_name,
        {{ identity_normalise_name('formal_name') }} as name_value
    from nicknames
    union
    select
        {{ identity_normalise_name('formal_name') }} as group_name,
        {{ identity_normalise_name('nickname') }} as name_value
    from nicknames
),

nickname_pairs as (
    select distinct
        groups_a.name_value as name_a,
        groups_b.name_value as name_b
    from nickname_groups as groups_a
    inner join nickname_groups as groups_b
        on
            groups_a.group_name = groups_b.group_name
            and groups_a.name_value <> groups_b.name_value
),

all_pairs as (
    select
        name_a,
        name_b
    from one_edit_pairs
    union
    select
        name_a,
        name_b
    from nickname_pairs
),

final as (
    select
        all_pairs.name_a,
        all_pairs.name_b,
        nickname_pairs.name_a is not null as is_nickname_pair,
        one_edit_pairs.name_a is not null as is_one_edit_apart
    from all_pairs
    left join nickname_pairs
        on
            all_pairs.name_a = nickname_pairs.name_a
            and all_pairs.name_b = nickname_pairs.name_b
    left join one_edit_pairs
        on
            all_pairs.name_a = one_edit_pairs.name_a
            and all_pairs.name_b = one_edit_pairs.name_b
)

select * from final
