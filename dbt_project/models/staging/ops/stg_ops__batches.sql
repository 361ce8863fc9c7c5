with source as (
    select * from {{ source('ops_outreach', 'batches') }}
),

renamed as (
    select
        batch_id,
        dag_run_id,
        as_of as batch_as_of,
        location_id,
        channel,
        status as batch_status,
        items,
        decided_by,
        decided_at,
        created_at
    from source
)

select * from renamed
