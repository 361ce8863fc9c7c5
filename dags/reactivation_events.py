"""
### Provider events and follow-up sends (every 15 minutes)

Provider events and replies arrive through the webhook receiver, which writes
them to the warehouse as they come (STOP takes effect at once). This DAG closes
the loop between nightly runs:

1. **batches_to_follow_up**: batches with sends whose outcome is unknown, crash
   leftovers, or deferred touches whose quiet-hours window has opened;
2. **follow_up**: one mapped task per batch in the `provider_sends` pool:
   reconcile unknown sends with the provider (never a blind resend), then send
   what is due, re-checking every contact rule.

Logic lives in `plugins/reactivation/outreach/`; this file is wiring only.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": int(os.environ.get("REACTIVATION_TASK_RETRIES", "2")),
    "retry_delay": pendulum.duration(minutes=2),
}


@dag(
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["reactivation", "events"],
)
def reactivation_events():
    @task
    def batches_to_follow_up() -> list[str]:
        from reactivation.outreach.follow_up import batches_needing_follow_up
        from reactivation.warehouse import warehouse_url

        with warehouse_url(stop_embedded=False) as url:
            return batches_needing_follow_up(url)

    @task(pool="provider_sends", max_active_tis_per_dagrun=4)
    def follow_up(batch_id: str) -> dict:
        from reactivation.outreach import stage

        return stage.send(batch_id=batch_id)

    follow_up.expand(batch_id=batches_to_follow_up())


reactivation_events()
