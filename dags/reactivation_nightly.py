"""
### Nightly patient reactivation

Loads the practices' EMR extracts into the warehouse's raw layer, builds the dbt
marts (staging → identity → care gaps → outreach candidates) and records a
count-only summary of every stage in `ops.stage_results`.

The run's **as-of date is its logical date** (`ds`), never the wall clock, so a
re-run of the same night gives the same answer.

Logic lives in `plugins/reactivation/` (`reactivation.nightly`); this file is wiring only.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

# `reactivation run` sets retries to 0: under `airflow dags test` a retry waits out its delay.
DEFAULT_ARGS = {
    "owner": "data-team",
    "retries": int(os.environ.get("REACTIVATION_TASK_RETRIES", "2")),
    "retry_delay": pendulum.duration(minutes=5),
    "retry_exponential_backoff": True,
}


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

    loaded = ingest(as_of="{{ ds }}", dag_run_id="{{ run_id }}")
    built = transform(as_of="{{ ds }}", dag_run_id="{{ run_id }}")
    loaded >> built


reactivation_nightly()
