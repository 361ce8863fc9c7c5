"""
### Nightly patient reactivation

1. **ingest**: the practices' EMR extracts into the warehouse's raw layer.
2. **transform**: one `dbt build`: staging → identity → care gaps → outreach candidates.
3. **quality_gate**: Great Expectations checks; a critical failure blocks sends in its scope.
4. **plan_outreach**: advance episodes, pick tonight's touches within the contact rules,
   write batches per location and channel, each with a manifest for review.
5. **approve_batches**: batches no pre-approved policy covers wait for a person
   (human-in-the-loop approval); a rejected or expired batch sends nothing.
6. **send**: one mapped task per approved batch, in the `provider_sends` pool:
   exactly once per outreach key, contact rules checked again at send time.
7. **close_night**: undecided batches expire, call lists are exported, counts recorded.
8. **report**: the leadership report (self-contained HTML) and the night's headline numbers.

The run's **as-of date is its logical date** (`ds`), never the wall clock, so a
re-run of the same night plans and sends nothing new.

Logic lives in `plugins/reactivation/`; this file is wiring only.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import dag, task

# `reactivation run` sets retries to 0: under `airflow dags test` a retry waits out its delay.
DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": int(os.environ.get("REACTIVATION_TASK_RETRIES", "2")),
    "retry_delay": pendulum.duration(minutes=5),
    "retry_exponential_backoff": True,
}
RUN = {"as_of": "{{ ds }}", "dag_run_id": "{{ run_id }}"}
# How long batches wait for a person; with no answer Airflow applies the default (Reject) and they expire.
APPROVAL_TIMEOUT = pendulum.duration(minutes=float(os.environ.get("REACTIVATION_APPROVAL_TIMEOUT_MINUTES", "360")))


@dag(
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2020, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
    tags=["reactivation", "nightly"],
)
def reactivation_nightly():
    @task
    def ingest(as_of: str, dag_run_id: str) -> dict:
        from reactivation import nightly

        return nightly.ingest(as_of=as_of, dag_run_id=dag_run_id)

    @task
    def transform(as_of: str, dag_run_id: str) -> dict:
        from reactivation import nightly

        return nightly.transform(as_of=as_of, dag_run_id=dag_run_id)

    @task
    def quality_gate(as_of: str, dag_run_id: str) -> dict:
        from reactivation.quality.stage import run_gate

        return run_gate(as_of=as_of, dag_run_id=dag_run_id)

    @task
    def plan_outreach(as_of: str, dag_run_id: str) -> dict:
        from reactivation.outreach import stage

        return stage.plan(as_of=as_of, dag_run_id=dag_run_id)

    @task.branch
    def needs_approval(plan: dict) -> str:
        return "approve_batches" if plan["awaiting_approval"] else "sendable_batches"

    # A plain HITLOperator rather than ApprovalOperator: on Reject the latter skips its downstream task and
    # pushes no result, so the person's rejection could not be recorded in their name.
    approve_batches = HITLOperator(
        task_id="approve_batches",
        options=["Approve", "Reject"],
        subject="Approve tonight's outreach batches",
        body=(
            "Batches awaiting approval: {{ ti.xcom_pull(task_ids='plan_outreach')['awaiting_approval'] | join(', ') }}."
            " Review each with `reactivation batches show BATCH_ID`."
        ),
        defaults="Reject",
        response_timeout=APPROVAL_TIMEOUT,
        retries=0,
    )

    @task
    def record_decision(as_of: str, **context) -> dict:
        from reactivation.outreach.approval import record_hitl_response

        return record_hitl_response(as_of=as_of, response=context["ti"].xcom_pull(task_ids="approve_batches"))

    @task(trigger_rule="none_failed_min_one_success")
    def sendable_batches(as_of: str) -> list[str]:
        from reactivation.outreach import stage

        return stage.sendable(as_of=as_of)

    @task(pool="provider_sends", max_active_tis_per_dagrun=4)
    def send(batch_id: str) -> dict:
        from reactivation.outreach import stage

        return stage.send(batch_id=batch_id)

    @task(trigger_rule="all_done")
    def close_night(as_of: str, dag_run_id: str) -> dict:
        from reactivation.outreach import stage

        return stage.close(as_of=as_of, dag_run_id=dag_run_id)

    @task(trigger_rule="all_done")
    def report(as_of: str, dag_run_id: str) -> dict:
        from reactivation.reporting.stage import build_report

        return build_report(as_of=as_of, dag_run_id=dag_run_id)

    loaded = ingest(**RUN)
    built = transform(**RUN)
    gate = quality_gate(**RUN)
    plan = plan_outreach(**RUN)
    branch = needs_approval(plan)
    decided = record_decision(as_of="{{ ds }}")
    sendable = sendable_batches(as_of="{{ ds }}")
    sent = send.expand(batch_id=sendable)
    closed = close_night(**RUN)

    loaded >> built >> gate >> plan
    branch >> [approve_batches, sendable]
    approve_batches >> decided >> sendable
    # The run fails when any stage failed, even though close_night and report always run.
    done = EmptyOperator(task_id="night_complete")
    sent >> closed >> report(**RUN)
    # sendable_batches is downstream of planning and of the approval decision: a failure there fails the run.
    [closed, gate, sendable] >> done


reactivation_nightly()
