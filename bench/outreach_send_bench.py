"""Plan and send N emails to the provider sandbox: requests made, CPU time per message, wall time.

    .venv/bin/python bench/outreach_send_bench.py --emails 100000

A private embedded PostgreSQL gets the marts outreach reads (generated in SQL:
N people, each in their own household, one open gap, a valid email), then the
real planning and sending code runs against a real sandbox over HTTP with the
official SendGrid SDK. Requests must equal ceil(N / 1000) plus retries.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))
sys.path.insert(0, str(ROOT / "tests"))

AS_OF = date(2026, 11, 2)
NOON_CHICAGO = datetime(2026, 11, 2, 18, 0, tzinfo=UTC)


def _populate(url: str, n: int) -> None:
    import psycopg
    from outreach_fixtures import DDL, REASONS_SEED

    from reactivation.warehouse import ensure_schema

    ensure_schema(url)
    with psycopg.connect(url) as conn:
        conn.execute(DDL)
        conn.execute(f"copy reference.message_reasons from '{REASONS_SEED}' with (format csv, header)")
        conn.execute(
            "insert into staging.stg_emr__locations values (%s, %s, %s, %s, %s)",
            ("loc_a", "Riverside Dental", "+14025550100", "rd.example/book", AS_OF),
        )
        conn.execute(
            """insert into marts.outreach_candidates
               select 'p' || g, 'h' || g, 'loc_a', 'dormant', 'r', null, 'lapsed_preventive', 50, 'email', 'en',
                      'email', 'America/Chicago', null, 30, %s
               from generate_series(1, %s) as g""",
            (AS_OF, n),
        )
        conn.execute("insert into marts.care_gaps select person_id, rule_id, 'open' from marts.outreach_candidates")
        conn.execute(
            """insert into marts.persons
               select person_id, 'loc_a', 'America/Chicago', '1980-01-01', 'F', 'en', null, false,
                      'patient' || substr(person_id, 2) || '@example.org', true, false, null, household_id
               from marts.outreach_candidates"""
        )
        conn.execute("analyze")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=100_000)
    args = parser.parse_args()

    from reactivation.embedded_warehouse import EmbeddedWarehouse
    from reactivation.local_services import provider_connections
    from reactivation.outreach.approval import decide_batches
    from reactivation.outreach.config import load_config
    from reactivation.outreach.delivery import send_one_batch
    from reactivation.outreach.planning import plan_outreach
    from reactivation.sandbox.clients import SandboxControl
    from reactivation.sandbox.server import SandboxServer

    root = ROOT / ".state" / "bench" / f"send-{uuid.uuid4().hex[:8]}"
    server = EmbeddedWarehouse(root)
    url = server.start()
    try:
        started = time.perf_counter()
        _populate(url, args.emails)
        print(f"warehouse ready with {args.emails:,} people in {time.perf_counter() - started:.1f} s")
        config = dataclasses.replace(load_config(), holdout_share=0.0)

        wall, cpu = time.perf_counter(), time.process_time()
        summary = plan_outreach(url, as_of=AS_OF, dag_run_id="bench", config=config)
        plan_wall, plan_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"planned {summary.touches_planned:,} touches in {plan_wall:.1f} s wall, {plan_cpu:.1f} s CPU")
        decide_batches(url, as_of=AS_OF, decision="approve", decided_by="bench")  # over the policy's size limit

        with SandboxServer(delivery_delay=3600) as sandbox:  # no delivery events: measure the sends alone
            import os

            os.environ.update(provider_connections(sandbox.url, "http://127.0.0.1:9"))
            wall, cpu = time.perf_counter(), time.process_time()
            result = send_one_batch(url, f"{AS_OF}:loc_a:email", clock=lambda: NOON_CHICAGO)
            send_wall, send_cpu = time.perf_counter() - wall, time.process_time() - cpu
            with SandboxControl(sandbox.url) as control:
                stats = control.stats()
        requests = sum(v for k, v in stats.get("requests", {}).items() if "mail" in k and "send" in k)
        expected = math.ceil(args.emails / 1000) + result["retries"]
        print()
        print(f"{'emails accepted':<28}{result['accepted']:>14,}")
        print(f"{'mail/send requests':<28}{requests:>14,}   expected ceil(n/1000) + retries = {expected:,}")
        print(f"{'send wall time':<28}{send_wall:>13.1f}s   {args.emails / send_wall:,.0f} emails/s")
        print(f"{'our CPU per message':<28}{send_cpu / args.emails * 1e6:>12.0f}µs   (planning: "
              f"{plan_cpu / args.emails * 1e6:.0f} µs)")  # fmt: skip
        print(f"requests {'==' if requests == expected else '!='} expected")
        return 0 if requests == expected and result["accepted"] == args.emails else 1
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
