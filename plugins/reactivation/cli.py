"""``reactivation``: the operator's command line.

Every command that touches the warehouse uses ``WAREHOUSE_URL`` (or the Airflow
connection ``reactivation_warehouse``) and falls back to the embedded warehouse.
Errors the operator can act on are printed as one line and exit with status 2;
they never carry patient data or secrets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path

from reactivation import __version__

EXIT_USAGE = 2


def _as_of(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from reactivation.nightly_run import run_nightly

    return run_nightly(as_of=args.as_of, sources=args.sources, timeout=args.timeout)


def _cmd_load(args: argparse.Namespace) -> int:
    from reactivation.ingest.pipeline import load_path
    from reactivation.warehouse import analyze_raw, warehouse_url

    if not args.format and not args.mapping:
        raise UsageError("say how to read the extract: --format {csv,fhir,synthea} or --mapping FILE.yml")
    with warehouse_url() as url:
        summary = load_path(
            url,
            args.path,
            fmt=args.format,
            mapping_file=args.mapping,
            location=args.location,
            extract_date=args.extract_date,
            show_progress=sys.stderr.isatty() and not args.json,
        )
        analyze_raw(url, sorted({f.entity for f in summary.files if f.status == "loaded"}))
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2, default=str))
    else:
        from reactivation.console import print_load_summary

        print_load_summary(summary)
    return 1 if summary.totals["rejected"] else 0


def _cmd_transform(args: argparse.Namespace) -> int:
    from reactivation.transform import run_dbt_build
    from reactivation.warehouse import warehouse_url

    with warehouse_url() as url:
        result = run_dbt_build(
            url,
            as_of=args.as_of,
            select=args.select,
            full_refresh=args.full_refresh,
            unit_tests=args.unit_tests,
            variables={"test_every_row": True} if args.test_every_row else None,
        )
    print(json.dumps(result, indent=2))
    return 0 if result["success"] else 1


def _cmd_batches(args: argparse.Namespace) -> int:
    from reactivation.outreach import approval
    from reactivation.warehouse import ensure_schema, warehouse_url

    with warehouse_url() as url:
        ensure_schema(url)
        if args.action == "list":
            rows = approval.list_batches(url, args.as_of)
            if args.json:
                print(json.dumps(rows, indent=2, default=str))
            else:
                from reactivation.console import print_batches

                print_batches(rows)
            return 0
        if not args.batch_ids:
            raise UsageError(f"batches {args.action} needs at least one batch id (see `reactivation batches list`)")
        if args.action == "show":
            for batch_id in args.batch_ids:
                print(json.dumps(approval.show_batch(url, batch_id), indent=2, ensure_ascii=False))
            return 0
        decision = {"approve": "approve", "reject": "reject"}[args.action]
        changed = approval.decide_batches(
            url, batch_ids=args.batch_ids, decision=decision, decided_by=args.by, note=args.note
        )
        print(f"{args.action}d: {', '.join(changed)}")
    return 0


def _cmd_calls(args: argparse.Namespace) -> int:
    from reactivation.outreach.providers.call_list import import_outcomes
    from reactivation.warehouse import warehouse_url

    with warehouse_url() as url:
        counts = import_outcomes(url, args.file)
    print(json.dumps(counts))
    return 0


def _cmd_contract(args: argparse.Namespace) -> int:
    from reactivation.ingest.contract_doc import render_contract_markdown

    print(render_contract_markdown(), end="")
    return 0


def _cmd_warehouse(args: argparse.Namespace) -> int:
    from reactivation.embedded_warehouse import EmbeddedWarehouse
    from reactivation.settings import get_settings, redact_url

    settings = get_settings()
    configured = settings.resolved_warehouse_url()
    server = EmbeddedWarehouse(settings.embedded_warehouse_dir)
    if args.action == "url":
        if configured:
            print(redact_url(configured))
        elif server.is_running():
            print(server.url)
        else:
            raise UsageError("no warehouse configured and the embedded one is stopped: `reactivation warehouse start`")
        return 0
    if configured:
        raise UsageError("WAREHOUSE_URL is set: the embedded warehouse is not used")
    if args.action == "start":
        print(server.start())
    elif args.action == "stop":
        server.stop()
        print("stopped")
    else:
        print("running" if server.is_running() else "stopped")
    return 0


class UsageError(Exception):
    """Bad input the operator can fix; printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reactivation", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"reactivation {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (still no patient data)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole nightly pipeline through Airflow for one as-of date")
    run.add_argument("--as-of", type=_as_of, required=True, help="the run's logical date (YYYY-MM-DD)")
    run.add_argument("--sources", type=Path, help="sources file (default: REACTIVATION_SOURCES)")
    run.add_argument("--timeout", type=int, default=3600, help="hard limit in seconds for the Airflow run")
    run.set_defaults(func=_cmd_run)

    load = sub.add_parser("load", help="load an extract file or folder into the raw layer")
    how = load.add_mutually_exclusive_group()
    how.add_argument("--format", choices=["csv", "fhir", "synthea"])
    how.add_argument("--mapping", type=Path, help="a declarative source mapping (YAML)")
    load.add_argument("--location", help="location id for the load (default: from the mapping or the folder name)")
    load.add_argument("--extract-date", type=_as_of, help="the extract's date (default: from the file name)")
    load.add_argument("--json", action="store_true", help="print the summary as JSON")
    load.add_argument("path", type=Path)
    load.set_defaults(func=_cmd_load)

    transform = sub.add_parser("transform", help="build the dbt marts for an as-of date")
    transform.add_argument("--as-of", type=_as_of, required=True)
    transform.add_argument("--select", help="dbt node selection (default: everything)")
    transform.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild incremental models (EMR staging) from the raw layer, e.g. after a staging model's columns "
        "changed; the nightly eligibility history is kept",
    )
    transform.add_argument(
        "--unit-tests",
        action="store_true",
        help="also run dbt's unit tests, each before its model (the nightly build leaves them to `make test`)",
    )
    transform.add_argument(
        "--test-every-row",
        action="store_true",
        help="data tests read every row of the incremental models, not only the rows this build wrote "
        "(macros/tests/rows_this_run_wrote.sql)",
    )
    transform.set_defaults(func=_cmd_transform)

    batches = sub.add_parser("batches", help="review and decide outreach batches")
    batches.add_argument("action", choices=["list", "show", "approve", "reject"])
    batches.add_argument("batch_ids", nargs="*", help="batch ids (show, approve, reject)")
    batches.add_argument("--as-of", type=_as_of, help="only this night's batches (list)")
    batches.add_argument("--by", default=os.environ.get("USER", "operator"), help="who decides (recorded)")
    batches.add_argument("--note", help="a note recorded with the decision")
    batches.add_argument("--json", action="store_true")
    batches.set_defaults(func=_cmd_batches)

    calls = sub.add_parser("calls", help="read staff call outcomes back")
    calls.add_argument("action", choices=["import"])
    calls.add_argument("file", type=Path, help="a call-list CSV with the outcome column filled in")
    calls.set_defaults(func=_cmd_calls)

    contract = sub.add_parser("contract", help="print the extract contract (docs/extract-contract.md)")
    contract.set_defaults(func=_cmd_contract)

    warehouse = sub.add_parser("warehouse", help="manage the embedded warehouse")
    warehouse.add_argument("action", choices=["start", "stop", "status", "url"])
    warehouse.set_defaults(func=_cmd_warehouse)

    from reactivation import generate, quality, reporting, roles, sandbox
    from reactivation.webhooks import server as webhooks_server

    generate.add_subcommand(sub)
    quality.add_subcommand(sub)
    reporting.add_subcommand(sub)
    roles.add_subcommand(sub)
    sandbox.add_subcommand(sub)
    webhooks_server.add_subcommand(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from reactivation.settings import get_settings

    get_settings.cache_clear()  # read the environment as it is now
    parser = build_parser()
    args = parser.parse_args(argv)
    from reactivation.logs import configure_logging

    configure_logging(verbose=args.verbose)
    from reactivation.ingest.mapping import MappingError
    from reactivation.ingest.pipeline import LoadError
    from reactivation.outreach.approval import BatchDecisionError
    from reactivation.outreach.config import OutreachConfigError
    from reactivation.outreach.providers.call_list import CallOutcomeError
    from reactivation.settings import SettingsError
    from reactivation.warehouse import WarehouseUnavailable

    try:
        return int(args.func(args) or 0)
    except (
        UsageError,
        LoadError,
        MappingError,
        SettingsError,
        WarehouseUnavailable,
        BatchDecisionError,
        OutreachConfigError,
        CallOutcomeError,
    ) as err:
        print(f"reactivation {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
