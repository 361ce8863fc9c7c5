{#- Text normalisation for identity matching. The few PostgreSQL-specific functions
    (translate, regexp_replace with the 'g' flag) live only here, behind
    adapter.dispatch, so another warehouse needs only its own variants of these. -#}

{#- Lower case, accents folded to ASCII (done before lower(), which does not fold
    non-ASCII letters under the C locale). -#}
{% macro identity_fold(expression) -%}
    {{ return(adapter.dispatch('identity_fold', 'reactivation')(expression)) }}
{%- endmacro %}

{% macro default__identity_fold(expression) -%}
    lower(translate({{ expression }}, 'ÁÀÂÄÃÅÉÈÊËÍÌÎÏÓÒÔÖÕØÚÙÛÜÑÇÝáàâäãåéèêëíìîïóòôöõøúùûüñçýÿ', 'AAAAAAEEEEIIIIOOOOOOUUUUNCYaaaaaaeeeeiiiioooooouuuuncyy'))
{%- endmacro %}

{#- Every run of characters matching the class (e.g. '[^a-z]') replaced by `replacement`. -#}
{% macro identity_regexp_replace_all(expression, pattern, replacement) -%}
    {{ return(adapter.dispatch('identity_regexp_replace_all', 'reactivation')(expression, pattern, replacement)) }}
{%- endmacro %}

{% macro default__identity_regexp_replace_all(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{#- A name for comparison: folded, letters only ("O'Brien" -> obrien, "José-Luis" -> joseluis);
    null when nothing is left. -#}
{% macro identity_normalise_name(expression) -%}
    nullif({{ identity_regexp_replace_all(identity_fold(expression), '[^a-z]+', '') }}, '')
{%- endmacro %}

{#- The first word of a name, normalised ("Cortez Ruiz" -> cortez): compound surnames
    are often registered with one part only. -#}
{% macro identity_first_name_word(expression) -%}
    {{ identity_normalise_name(dbt.split_part(
        identity_regexp_replace_all("trim(" ~ expression ~ ")", '[ -]+', ' '), "' '", 1
    )) }}
{%- endmacro %}

{#- Digits only (postal codes); null when none. -#}
{% macro identity_digits(expression) -%}
    nullif({{ identity_regexp_replace_all(expression, '[^0-9]+', '') }}, '')
{%- endmacro %}

{#- An address line for comparison: folded, punctuation to single spaces, the
    commonest USPS street suffixes abbreviated and unit words dropped, so
    "12 Oak Street, Apt. #3" and "12 oak st 3" agree. (Each word is one nested
    replace(); a longer list exceeds sqlfluff's parse depth.) -#}
{% macro identity_normalise_address(expression) -%}
    {%- set words = [
        ('street', 'st'), ('avenue', 'ave'), ('road', 'rd'), ('drive', 'dr'), ('lane', 'ln'),
        ('court', 'ct'), ('boulevard', 'blvd'), ('place', 'pl'), ('terrace', 'ter'),
        ('apt', ''), ('apartment', ''), ('unit', ''), ('suite', ''), ('ste', ''),
    ] -%}
    {%- set ns = namespace(sql=dbt.concat([
        "' '",
        identity_regexp_replace_all(
            identity_fold(expression), '[^a-z0-9]+', ' '
        ),
        "' '",
    ])) -%}
    {%- for long_form, short_form in words -%}
        {%- set ns.sql = dbt.replace(ns.sql, "' " ~ long_form ~ " '", "' " ~ (short_form ~ ' ' if short_form else '') ~ "'") -%}
    {%- endfor -%}
    nullif(trim({{ ns.sql }}), '')
{%- endmacro %}

{#- `select 1 as char_position union all select 2 ...`: a portable integer series
    for walking the characters of a (short) name. -#}
{% macro identity_positions(max_position) -%}
    {%- for char_position in range(1, max_position + 1) %}
    select {{ char_position }} as char_position{% if not loop.last %} union all{% endif %}
    {%- endfor %}
{%- endmacro %}
