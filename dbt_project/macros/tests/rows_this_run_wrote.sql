{#- Incremental models whose data tests need read only what a night changed.

    Such a model stamps every row it writes with the start of the dbt invocation that
    wrote it (`built_at`, from build_started_at()) and says so in its config:
    meta: {tests_read: rows_this_run_wrote}. Its generic data tests then read:
      - unique and unique_combination: every row that shares the tested value with a row
        this run wrote. A value must be unique across the whole table, and a new row can
        collide with one written on an earlier night.
      - any other test (not_null, accepted_values, relationships): the rows this run
        wrote. A row no run rewrote is the row that passed the same tests the night it
        was written.
    A full build (or --full-refresh) writes every row, so its tests read every row, unfiltered.
    A history keyed by night (meta: {tests_read: the_night_this_run_wrote}) has its tests read
    the rows of the run's as-of date: a night never rewrites another night's rows.
    `--vars '{test_every_row: true}'` (reactivation transform --test-every-row) makes
    every test read the whole table again.

    dbt wraps the model a generic test reads in get_where_subquery (the hook its `where`
    config uses); this project's version adds the filter above and otherwise keeps
    dbt's behaviour. -#}

{% macro build_started_at() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

{#- Post-hook of every model (dbt_project.yml): a model whose tests read the rows this run
    wrote gets an index on built_at, so each test finds them without reading the table. -#}
{% macro built_at_index(relation) -%}
    {%- if (model.config.get('meta') or {}).get('tests_read') == 'rows_this_run_wrote' -%}
        create index if not exists {{ relation.identifier }}_built_idx on {{ relation }} (built_at)
    {%- endif -%}
{%- endmacro %}

{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append('(' ~ where ~ ')') -%}
    {%- endif -%}
    {%- set written = rows_this_run_wrote(relation) -%}
    {%- if written -%}
        {%- do conditions.append(written) -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- do return('(select * from ' ~ relation ~ ' where ' ~ conditions | join(' and ') ~ ') dbt_subquery') -%}
    {%- endif -%}
    {%- do return(relation) -%}
{%- endmacro %}

{#- The filter for a generic test of a model whose tests read the rows this run wrote;
    empty for any other test. -#}
{% macro rows_this_run_wrote(relation) -%}
    {%- set tested_id = model.get('attached_node') -%}
    {%- set tested = graph.nodes.get(tested_id) if tested_id else none -%}
    {%- if not execute or tested is none or var('test_every_row', false) -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- set tests_read = (tested.config.get('meta') or {}).get('tests_read') -%}
    {#- A history keyed by night (int_eligibility_daily): the night this run wrote is its as-of date. -#}
    {%- if tests_read == 'the_night_this_run_wrote' -%}
        {%- do return('as_of = ' ~ as_of_date()) -%}
    {%- endif -%}
    {%- if tests_read != 'rows_this_run_wrote' -%}
        {%- do return('') -%}
    {%- endif -%}
    {#- Not built yet (`dbt compile` on a new warehouse): nothing to filter. -#}
    {%- if load_relation(relation) is none -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- set stamped = 'built_at = ' ~ build_started_at() -%}
    {#- A table this run wrote whole (a first or full build) is read whole, without the filter. -#}
    {%- set earlier = run_query('select exists (select 1 from ' ~ relation ~ ' where not ' ~ stamped ~ ')') -%}
    {%- if not earlier.columns[0].values()[0] -%}
        {%- do return('') -%}
    {%- endif -%}
    {%- set test = model.get('test_metadata') or {} -%}
    {%- set kwargs = test.get('kwargs') or {} -%}
    {%- if test.get('name') == 'unique' -%}
        {%- set tested_columns = kwargs.get('column_name') -%}
    {%- elif test.get('name') == 'unique_combination' -%}
        {%- set tested_columns = kwargs.get('combination_of_columns') | join(', ') -%}
    {%- else -%}
        {%- do return(stamped) -%}
    {%- endif -%}
    {%- do return('(' ~ tested_columns ~ ') in (select ' ~ tested_columns ~ ' from ' ~ relation ~ ' where ' ~ stamped ~ ')') -%}
{%- endmacro %}
