"""The quality gate: Great Expectations between the marts and every patient.

``expectations/gx/`` is the committed GX file context (suites from
``quality.suites``); ``quality.gate`` runs its checkpoint with SQL pushdown, stores
results in ``ops.quality_results`` and the decision in ``ops.gate_decisions``;
``quality.stage.run_gate`` is the DAG's task; ``reactivation check`` runs the gate
alone.
"""

from __future__ import annotations

import argparse
import json
from datetime import date

EXIT_BLOCKED = 1
EXIT_CANNOT_RUN = 2


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None


def check(as_of: date, *, run_id: str | None = None, notify: bool = False, as_json: bool = False) -> int:
    """``reactivation check``: run the gate alone; 1 when it blocks anything, 0 when clean, 2 when it cannot run."""
    import sys

    from reactivation.quality.gate import GateError
    from reactivation.quality.stage import run_gate

    try:
        summary = run_gate(as_of=as_of, dag_run_id=run_id or f"check__{as_of.isoformat()}", notify=notify)
    except GateError as err:
        print(f"reactivation check: {err}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        from reactivation.console import console

        colour = "red" if summary["blocked"] else "green"
        console.print(f"[{colour}]{summary['headline']}[/]")
        for where, reasons in summary["reasons"].items():
            label = "everywhere" if where == "__global__" else where
            for reason in reasons:
                console.print(f"  [red]blocked[/] {label}: {reason}")
        if summary.get("data_docs"):
            console.print(f"Data Docs (counts only): {summary['data_docs']}")
    return EXIT_BLOCKED if summary["blocked"] else 0


def _cmd_check(args: argparse.Namespace) -> int:
    return check(args.as_of, run_id=args.run_id, notify=args.notify, as_json=args.json)


def add_subcommand(subparsers) -> None:
    """Register ``reactivation check --as-of DATE`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "check",
        help="run the quality gate alone for an as-of date; exit 1 when it blocks",
        description="Run the Great Expectations quality gate on the warehouse as it is now, for one as-of date. "
        "Stores results and the decision like the nightly run; exits 1 when anything is blocked, 0 when clean.",
    )
    parser.add_argument("--as-of", type=_date, required=True, help="the run date to judge against (YYYY-MM-DD)")
    parser.add_argument("--run-id", help="id the results are stored under (default: check__<as-of>)")
    parser.add_argument("--notify", action="store_true", help="also notify operations when blocked")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=_cmd_check)
