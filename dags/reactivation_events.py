"""
### Provider events and follow-up sends (every 15 minutes)

Provider events and replies arrive through the webhook receiver, which writes
them to the warehouse as they come (STOP takes effect at once). This DAG closes
the loop between nightly runs:

1. **catch_up_inbound_sms**: SMS replies the receiver missed (Twilio never
   retries an incoming-message webhook) are listed from the provider (last 3
   days) and handled as the receiver would have: a STOP sent during an outage
   opts the person out before this run sends anything. If it fails, this run
   sends nothing (we cannot tell who asked us to stop);
2. **batches_to_follow_up**: batches with sends whose outcome is unknown, crash
   leftovers, or deferred touches whose quiet-hours window has opened;
3. **follow_up**: one mapped task per batch in the `provider_sends` pool:
   reconcile unknown sends with the provider (never a blind resend), then send
   what is due, re-checking every contact rule;
4. **catch_up_sms_statuses**: SMS delivery statuses the receiver missed (Twilio
   retries a status callback only briefly) are fetched from the provider and
   recorded as the receiver would have recorded them.

Logic lives in `plugins/reactivation/outreach/` and
`plugins/reactivation/webhooks/inbound_catch_up.py`; this file is wiring only.
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
    def catch_up_inbound_sms() -> dict:
        from reactivation.warehouse import warehouse_url
        from reactivation.webhooks.inbound_catch_up import catch_up_inbound_sms

        with warehouse_url(stop_embedded=False) as url:
            return catch_up_inbound_sms(url)

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

    @task
    def catch_up_sms_statuses() -> dict:
        from reactivation.outreach.follow_up import backfill_sms_statuses
        from reactivation.warehouse import warehouse_url

        with warehouse_url(stop_embedded=False) as url:
            return backfill_sms_statuses(url)

    # Missed replies first: every send re-reads the opt-outs, so a caught-up STOP stops this run's sends.
    # The status catch-up is independent of the sends (it only looks at messages accepted a while ago),
    # and a leaf of its own, so a failed follow_up still fails the run.
    batches = batches_to_follow_up()
    catch_up_inbound_sms() >> batches
    follow_up.expand(batch_id=batches)
    catch_up_sms_statuses()


reactivation_events()
