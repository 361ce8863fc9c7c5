{#- The suppression reasons, in the precedence that picks a person's first reason
    (int_eligibility_daily ranks them in this order). -#}
{% macro suppression_reason_codes() -%}
    {{ return([
        'deceased', 'hold', 'opted_out', 'no_valid_contact',
        'future_appointment', 'seen_recently', 'attempt_cap_reached', 'resting',
    ]) }}
{%- endmacro %}
