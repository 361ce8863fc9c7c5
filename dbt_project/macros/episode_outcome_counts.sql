{#- The outreach half of a report row, over a group of contacted episodes
    (int_episode_outcomes): the funnel counts it by week, the location comparison by
    location, and both must count an episode the same way. -#}
{% macro episode_outcome_counts() -%}
    count(*) as contacted,
    sum(case when is_delivered then 1 else 0 end) as delivered,
    sum(case when is_replied then 1 else 0 end) as replied,
    sum(case when is_booked then 1 else 0 end) as booked,
    sum(case when is_showed then 1 else 0 end) as showed,
    sum(case when is_no_show then 1 else 0 end) as no_shows,
    sum(case when is_decided then 1 else 0 end) as decided
{%- endmacro %}
