{#- Sorts of several million rows (coverage ranking, population): 1 GB per sort or hash
    keeps them in memory on a box where only two dbt threads run (the project default is
    256 MB; this hook runs after it). Hash joins, not nested loops, for the joins of
    millions of rows the planner sometimes misjudges. -#}
{{
    config(
        materialized='incremental',
        unique_key='person_id',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        pre_hook="{% if target.type == 'postgres' %}set local work_mem = '1GB'; set local enable_nestloop = off{% endif %}",
        post_hook="create index if not exists int_care_gap_evaluations_person_idx on {{ this }} (person_id)",
    )
}}

-- Every person's care gaps, evaluated: one row per person per enabled care-gap rule whose
-- population the person is in, with the rule's status on the as-of date it was evaluated
-- (as_of_date). care_gaps publishes them for tonight. Everything a rule needs comes from
-- the catalog (seeds/rules): who it applies to, which value sets close it and
-- after how long, what excludes a person. Two evaluators:
--   interval rules (rule_kind 'interval'): due = the latest closing event of each
--     closing value set + its interval; the value set that keeps the person
--     covered longest wins. The short interval applies when the person is in the
--     rule's short_interval value set (periodontal disease) or the latest valued
--     closing event is above above_goal_value (HbA1c above 8.0). A rule with no
--     closing value sets is closed by any completed visit (dormant).
--   event-driven rules (missed appointment, referral, treatment plan, recalls):
--     due = trigger date + grace_days, unless the trigger was closed or withdrawn.
-- Boundary: a gap is open ON its due date (evidence date + interval): exactly
-- 12 months after a wellness visit the yearly check-up is open, days_overdue 0.
--
-- Incremental by person. A night evaluates again only the people whose evaluation can
-- have changed; every other person's rows stand, and care_gaps moves their days
-- overdue on to tonight. A person is evaluated again when
--   * what the rules read of them changed: their row of int_person_facts, their closing
--     events or their triggers (inputs_hash, an order-free sum of a hash of each row;
--     those models are rebuilt for the as-of date each night, so a birthday, a death on
--     record or an event leaving a value set's window shows here too), or
--   * the as-of date reached a day on which one of their rows changes by the calendar
--     alone (reevaluate_on, the earliest of: a due date, the first day of a due-soon
--     window, a trigger leaving the rule's lookback, a birth date), or
--   * they are new, or gone (their rows are deleted: a row with no rule stands in).
-- Everyone is evaluated again when the catalog or this model's SQL changed
-- (catalog_hash), or the as-of date went back before a stored evaluation.
with rules as (
    select * from {{ ref('care_gap_rules') }}
),

rule_value_sets as (
    select * from {{ ref('int_care_gap_rule_value_sets') }}
),

-- Read twice (hashed for the scope, then filtered to it), scanned twice rather than
-- held in memory: a scan costs less than keeping a million rows. The person facts without
-- built_at: a person derived again with the same facts is not evaluated again.
all_person_facts as not materialized (
    select
        person_id,
        home_location_id,
        birth_date,
        sex,
        age_years,
        is_deceased,
        deceased_date,
        is_medical_patient,
        is_dental_patient,
        medical_location_id,
        dental_location_id,
        last_visit_date,
        last_visit_location_id,
        last_medical_visit_date,
        last_medical_location_id,
        last_dental_visit_date,
        last_dental_location_id,
        active_value_set_ids
    from {{ ref('int_person_facts') }}
),

all_closing_events as not materialized (
    select * from {{ ref('int_care_gap_closing_events') }}
),

all_triggers as not materialized (
    select * from {{ ref('int_care_gap_triggers') }}
),

run_parameters as (
    select {{ as_of_date() }} as as_of_date
),

-- scope: who is evaluated tonight ----------------------------------------------------

-- Materialized: computed once, not once per row of the select that reads it.
catalog as materialized (
    select
        md5(
            '{{ local_md5(model.raw_code) }}'
            || coalesce(
                (select string_agg(cast(rules as {{ dbt.type_string() }}), '|' order by rules.rule_id) from rules), ''
            )
            || coalesce(
                (
                    select
                        string_agg(
                            cast(rule_value_sets as {{ dbt.type_string() }}),
                            '|'
                            order by rule_value_sets.rule_id, rule_value_sets.value_set_role, rule_value_sets.value_set_id
                        )
                    from rule_value_sets
                ),
                ''
            )
        ) as catalog_hash
),

{%- set inputs = ['person_facts', 'closing_events', 'triggers'] %}

input_row_hashes as (
    {%- for input in inputs %}
        select
            person_id,
            hash_record_extended(all_{{ input }}, {{ loop.index }}) as row_hash
        from all_{{ input }}
        {%- if not loop.last %}
            union all
        {%- endif %}
    {%- endfor %}
),

person_inputs as (
    select
        person_id,
        sum(row_hash) as inputs_hash
    from input_row_hashes
    group by person_id
),

{%- if is_incremental() %}

stored as (
    select
        stored_rows.person_id,
        min(stored_rows.inputs_hash) as inputs_hash,
        min(stored_rows.reevaluate_on) as reevaluate_on,
        bool_or(
            stored_rows.catalog_hash is distinct from catalog.catalog_hash
            or stored_rows.as_of_date > run_parameters.as_of_date
        ) as is_stale
    from {{ this }} as stored_rows
    cross join catalog
    cross join run_parameters
    group by stored_rows.person_id
),

evaluate_everyone as (
    select exists (select 1 from stored where stored.is_stale) as yes
),

persons_to_evaluate as (
    select
        coalesce(person_inputs.person_id, stored.person_id) as person_id,
        person_inputs.inputs_hash
    from person_inputs
    full outer join stored
        on person_inputs.person_id = stored.person_id
    cross join evaluate_everyone
    cross join run_parameters
    where
        evaluate_everyone.yes
        or stored.person_id is null
        or person_inputs.inputs_hash is distinct from stored.inputs_hash
        or stored.reevaluate_on <= run_parameters.as_of_date
),

{%- else %}

persons_to_evaluate as (
    select * from person_inputs
),

{%- endif %}

-- Each input narrowed to the people evaluated tonight.
{%- for input in inputs %}

{{ input }} as (
    select all_{{ input }}.*
    from all_{{ input }}
    {%- if is_incremental() %}
        where all_{{ input }}.person_id in (select persons_to_evaluate.person_id from persons_to_evaluate)
    {%- endif %}
),
{%- endfor %}

-- population: demographics, practice type, required conditions, exclusions --------
-- Interval rules apply to everyone in their population; event-driven rules only to
-- the people with a trigger of the rule (the others would get no row anyway). Each
-- person's value-set list is split into rows once and joined to the value sets the
-- rules name (conditions, exclusions, short interval), not tested per person and rule.

rule_requirements as (
    select
        rules.rule_id,
        count(case when rule_value_sets.value_set_role = 'condition' then 1 end) as condition_count,
        count(case when rule_value_sets.value_set_role = 'closing' then 1 end) as closing_value_set_count
    from rules
    left join rule_value_sets
        on rules.rule_id = rule_value_sets.rule_id
    group by rules.rule_id
),

-- Each person's value sets as rows (the list in int_person_facts is '|a|b|').
person_value_sets as (
    select
        person_facts.person_id,
        listed.value_set_id
    from person_facts
    cross join
        lateral
        unnest(
            string_to_array(trim(both '|' from person_facts.active_value_set_ids), '|')
        ) as listed (value_set_id)
    where person_facts.active_value_set_ids != '|'
),

person_rule_value_sets as (
    select
        person_value_sets.person_id,
        rule_value_sets.rule_id,
        count(case when rule_value_sets.value_set_role = 'condition' then 1 end) as matched_condition_count,
        min(
            case when rule_value_sets.value_set_role = 'exclusion' then rule_value_sets.value_set_id end
        ) as exclusion_value_set_id,
        max(case when rule_value_sets.value_set_role = 'short_interval' then 1 else 0 end) as short_interval_matches
    from person_value_sets
    inner join rule_value_sets
        on
            person_value_sets.value_set_id = rule_value_sets.value_set_id
            and rule_value_sets.value_set_role != 'closing'
    group by person_value_sets.person_id, rule_value_sets.rule_id
),

-- Narrow on purpose: the rule's wording (reason, cadence, priority) joins at the end.
demographic_matches as (
    select
        person_facts.person_id,
        person_facts.birth_date,
        person_facts.is_deceased,
        person_facts.home_location_id,
        case rules.practice_type
            when 'medical' then person_facts.medical_location_id
            when 'dental' then person_facts.dental_location_id
            else person_facts.last_visit_location_id
        end as practice_location_id,
        case
            when rules.practice_type = 'medical' then person_facts.last_medical_visit_date
            when rules.practice_type = 'dental' then person_facts.last_dental_visit_date
            else person_facts.last_visit_date
        end as last_practice_visit_date,
        rules.rule_id,
        rules.rule_kind,
        rules.interval_months,
        rules.short_interval_months,
        rules.above_goal_value,
        coalesce(rules.due_soon_days, 0) as due_soon_days,
        coalesce(rules.grace_days, 0) as grace_days,
        rules.lookback_months,
        run_parameters.as_of_date
    from person_facts
    cross join rules
    cross join run_parameters
    where
        rules.enabled
        and person_facts.birth_date <= run_parameters.as_of_date
        and (rules.min_age is null or person_facts.age_years >= rules.min_age)
        and (rules.max_age is null or person_facts.age_years <= rules.max_age)
        and (coalesce(rules.sex, 'any') = 'any' or person_facts.sex = rules.sex)
        and (
            coalesce(rules.practice_type, 'any') = 'any'
            or (rules.practice_type = 'medical' and person_facts.is_medical_patient)
            or (rules.practice_type = 'dental' and person_facts.is_dental_patient)
        )
        and (
            rules.rule_kind = 'interval'
            or exists (
                select 1
                from triggers
                where triggers.person_id = person_facts.person_id and triggers.rule_id = rules.rule_id
            )
        )
),

population as (
    select
        demographic_matches.*,
        person_rule_value_sets.exclusion_value_set_id,
        coalesce(person_rule_value_sets.short_interval_matches, 0) = 1 as in_short_interval_value_set,
        rule_requirements.closing_value_set_count
    from demographic_matches
    inner join rule_requirements
        on demographic_matches.rule_id = rule_requirements.rule_id
    left join person_rule_value_sets
        on
            demographic_matches.person_id = person_rule_value_sets.person_id
            and demographic_matches.rule_id = person_rule_value_sets.rule_id
    where coalesce(person_rule_value_sets.matched_condition_count, 0) = rule_requirements.condition_count
),

-- interval rules ----------------------------------------------------------------------

-- The latest event of every closing value set (int_care_gap_closing_events) for the
-- people in the rule's population, counted only from min_age_at_event (an HPV test
-- before 30 does not count; the latest test is the oldest the person was), with the
-- interval it earns: the short one when the person is in the short-interval value
-- set or the latest result is above goal.
interval_candidates as (
    select
        population.*,
        closing_events.value_set_id,
        closing_events.event_date,
        closing_events.value_numeric,
        closing_events.location_id as event_location_id,
        case
            when
                population.short_interval_months is not null
                and (
                    population.in_short_interval_value_set
                    or closing_events.latest_value > population.above_goal_value
                )
                then population.short_interval_months
            else closing_events.interval_months
        end as effective_interval_months
    from population
    inner join closing_events
        on
            population.person_id = closing_events.person_id
            and population.rule_id = closing_events.rule_id
    where
        population.rule_kind = 'interval'
        and (
            closing_events.min_age_at_event is null
            or closing_events.event_date
            >= {{ dbt.dateadd('year', 'closing_events.min_age_at_event', 'population.birth_date') }}
        )
),

-- Rules without closing value sets (dormant) are closed by the last completed visit
-- at a practice of the rule's type; rules with them get an empty "no evidence" row.
fallback_options as (
    select
        population.*,
        case when population.closing_value_set_count = 0 then 'completed_visit' end as evidence_value_set_id,
        case
            when population.closing_value_set_count = 0 then population.last_practice_visit_date
        end as evidence_date
    from population
    where population.rule_kind = 'interval'
),

-- Every way a person may be covered; the one covering longest wins, and the empty
-- row ("no evidence on record") only when there is nothing else.
interval_options as (
    select
        person_id,
        rule_id,
        practice_location_id,
        home_location_id,
        is_deceased,
        exclusion_value_set_id,
        as_of_date,
        due_soon_days,
        value_set_id as evidence_value_set_id,
        event_date as evidence_date,
        value_numeric as evidence_value,
        event_location_id as evidence_location_id,
        cast({{ dbt.dateadd('month', 'effective_interval_months', 'event_date') }} as date) as due_date
    from interval_candidates
    union all
    select
        person_id,
        rule_id,
        practice_location_id,
        home_location_id,
        is_deceased,
        exclusion_value_set_id,
        as_of_date,
        due_soon_days,
        evidence_value_set_id,
        evidence_date,
        cast(null as numeric) as evidence_value,
        case when evidence_date is not null then practice_location_id end as evidence_location_id,
        cast({{ dbt.dateadd('month', 'interval_months', 'evidence_date') }} as date) as due_date
    from fallback_options
),

interval_ranked as (
    select
        *,
        row_number() over (
            partition by person_id, rule_id
            order by
                case when evidence_date is null then 1 else 0 end asc,
                due_date desc,
                evidence_date desc,
                evidence_value desc nulls last,
                evidence_value_set_id asc
        ) as coverage_rank
    from interval_options
),

interval_rows as (
    select
        person_id,
        rule_id,
        practice_location_id,
        home_location_id,
        is_deceased,
        exclusion_value_set_id,
        as_of_date,
        evidence_date,
        evidence_value,
        evidence_location_id,
        due_date,
        case
            when due_date is null then 'open'
            when due_date <= as_of_date then 'open'
            when due_date <= {{ dbt.dateadd('day', 'due_soon_days', 'as_of_date') }} then 'due_soon'
            else 'closed'
        end as base_status,
        -- The row changes by the calendar alone when the due-soon window opens or the due
        -- date comes.
        least(
            case when due_date > as_of_date then due_date end,
            case
                when {{ dbt.dateadd('day', '-1 * due_soon_days', 'due_date') }} > as_of_date
                    then cast({{ dbt.dateadd('day', '-1 * due_soon_days', 'due_date') }} as date)
            end
        ) as reevaluate_on
    from interval_ranked
    where coverage_rank = 1
),

-- event-driven rules ------------------------------------------------------------------

trigger_candidates as (
    select
        population.*,
        triggers.trigger_id,
        triggers.trigger_date,
        triggers.trigger_status,
        triggers.closed_date,
        triggers.location_id as trigger_location_id,
        case
            when triggers.trigger_status = 'pending'
                then cast({{ dbt.dateadd('day', 'population.grace_days', 'triggers.trigger_date') }} as date)
        end as trigger_due_date
    from population
    inner join triggers
        on
            population.person_id = triggers.person_id
            and population.rule_id = triggers.rule_id
    where
        population.rule_kind != 'interval'
        and (
            population.lookback_months is null
            or triggers.trigger_date
            >= cast({{ dbt.dateadd('month', '-1 * population.lookback_months', 'population.as_of_date') }} as date)
        )
),

trigger_ranked as (
    select
        *,
        case
            when trigger_status = 'withdrawn' then 'not_applicable'
            when trigger_status = 'closed' then 'closed'
            when trigger_due_date <= as_of_date then 'open'
            when trigger_due_date <= {{ dbt.dateadd('day', 'due_soon_days', 'as_of_date') }} then 'due_soon'
            else 'closed'
        end as base_status,
        row_number() over (
            partition by person_id, rule_id
            order by
                case
                    when trigger_status = 'withdrawn' then 4
                    when trigger_status = 'closed' then 3
                    when trigger_due_date <= as_of_date then 1
                    when trigger_due_date <= {{ dbt.dateadd('day', 'due_soon_days', 'as_of_date') }} then 2
                    else 3
                end asc,
                trigger_due_date asc,
                trigger_date desc,
                trigger_id asc
        ) as trigger_rank,
        -- Which trigger leads, and its status, change by the calendar alone when any
        -- trigger's due-soon window opens, its due date comes, or it leaves the lookback:
        -- the filter above keeps it while as-of - lookback <= trigger date, so up to and
        -- including trigger date + lookback, and no earlier than the day after can drop it.
        min(
            least(
                case when trigger_due_date > as_of_date then trigger_due_date end,
                case
                    when {{ dbt.dateadd('day', '-1 * due_soon_days', 'trigger_due_date') }} > as_of_date
                        then cast({{ dbt.dateadd('day', '-1 * due_soon_days', 'trigger_due_date') }} as date)
                end,
                case
                    when lookback_months is not null
                        then cast(
                            {{ dbt.dateadd('day', 1, dbt.dateadd('month', 'lookback_months', 'trigger_date')) }} as date
                        )
                end
            )
        ) over (partition by person_id, rule_id) as reevaluate_on
    from trigger_candidates
),

trigger_rows as (
    select
        person_id,
        rule_id,
        practice_location_id,
        home_location_id,
        is_deceased,
        exclusion_value_set_id,
        as_of_date,
        coalesce(closed_date, trigger_date) as evidence_date,
        cast(null as numeric) as evidence_value,
        trigger_location_id as evidence_location_id,
        trigger_due_date as due_date,
        base_status,
        reevaluate_on
    from trigger_ranked
    where trigger_rank = 1
),

-- both evaluators; deceased and exclusions decide last -------------------------------

evaluated as (
    select * from interval_rows
    union all
    select * from trigger_rows
),

-- The rule's wording and priority, carried only now.
described as (
    select
        evaluated.*,
        rules.priority,
        rules.reason,
        rules.cadence_id
    from evaluated
    inner join rules
        on evaluated.rule_id = rules.rule_id
),

final as (
    select
        person_id,
        rule_id,
        case
            when is_deceased or exclusion_value_set_id is not null then 'excluded'
            else base_status
        end as status,
        evidence_date,
        evidence_value,
        due_date,
        case
            when
                not is_deceased
                and exclusion_value_set_id is null
                and base_status = 'open'
                and due_date is not null
                then {{ dbt.datediff('due_date', 'as_of_date', 'day') }}
        end as days_overdue,
        case
            when is_deceased then 'deceased'
            else exclusion_value_set_id
        end as exclusion_reason,
        priority,
        coalesce(evidence_location_id, practice_location_id, home_location_id) as location_id,
        reason,
        cadence_id,
        as_of_date,
        reevaluate_on
    from described
),

{%- if is_incremental() %}

-- A person evaluated tonight with no row (gone from the identity map, or in no rule's
-- population) gets one with no rule instead: it deletes their earlier rows and keeps
-- their inputs_hash, so they are not evaluated again until something changes.
placeholders as (
    select
        persons_to_evaluate.person_id,
        cast(null as {{ dbt.type_string() }}) as rule_id,
        cast(null as {{ dbt.type_string() }}) as status,
        cast(null as date) as evidence_date,
        cast(null as numeric) as evidence_value,
        cast(null as date) as due_date,
        cast(null as {{ dbt.type_int() }}) as days_overdue,
        cast(null as {{ dbt.type_string() }}) as exclusion_reason,
        cast(null as {{ dbt.type_int() }}) as priority,
        cast(null as {{ dbt.type_string() }}) as location_id,
        cast(null as {{ dbt.type_string() }}) as reason,
        cast(null as {{ dbt.type_string() }}) as cadence_id,
        run_parameters.as_of_date,
        case when person_facts.birth_date > run_parameters.as_of_date then person_facts.birth_date end
            as reevaluate_on
    from persons_to_evaluate
    cross join run_parameters
    left join person_facts
        on persons_to_evaluate.person_id = person_facts.person_id
    where not exists (select 1 from final where final.person_id = persons_to_evaluate.person_id)
),

{%- endif %}

evaluations as (
    select * from final
    {%- if is_incremental() %}
        union all
        select * from placeholders
    {%- endif %}
)

select
    evaluations.*,
    persons_to_evaluate.inputs_hash,
    catalog.catalog_hash
from evaluations
inner join persons_to_evaluate
    on evaluations.person_id = persons_to_evaluate.person_id
cross join catalog
