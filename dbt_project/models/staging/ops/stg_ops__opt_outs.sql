with source as (
    select * from {{ source('ops', 'opt_outs') }}
),

renamed as (
    select
        person_id,
        channel,
        status,
        source as opt_out_source,
        recorded_at
    from source
)

select * from renamed
