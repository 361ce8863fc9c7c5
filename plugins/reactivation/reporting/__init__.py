"""The nightly leadership report: a self-contained HTML file of counts and charts.

``reactivation report --as-of DATE [--out PATH]`` writes it and prints its path and
the night's headline numbers; the nightly DAG calls ``reporting.stage.build_report``.
Counts only: the report never carries a name, phone, email, address or birth date.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None


def _cmd_report(args: argparse.Namespace) -> int:
    from reactivation.reporting.headline import format_headline
    from reactivation.reporting.render import write_report
    from reactivation.warehouse import warehouse_url

    with warehouse_url() as url:
        path, numbers = write_report(url, args.as_of, args.out)
    if args.json:
        print(json.dumps({"path": str(path), "headline": numbers}, indent=2, default=str))
    else:
        print(f"report: {path}")
        print(format_headline(numbers))
    return 0


def add_subcommand(subparsers) -> None:
    """Register ``reactivation report`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "report",
        help="write the night's self-contained HTML report for leadership and print its headline numbers",
        description="Write the self-contained HTML report (funnel, rates by location and channel, lift against "
        "the holdout, suppression reasons, data-quality trend) for one night and print its path and headline.",
    )
    parser.add_argument("--as-of", type=_date, required=True, help="the night to report on (YYYY-MM-DD)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where to write the HTML (default: REACTIVATION_STATE_DIR/reports/reactivation-report-<as-of>.html)",
    )
    parser.add_argument("--json", action="store_true", help="print the path and headline as JSON")
    parser.set_defaults(func=_cmd_report)
