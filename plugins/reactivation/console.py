"""Terminal output for the operator commands: short tables of counts, never patient data."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)


def print_load_summary(summary) -> None:
    table = Table(title=f"Load: {summary.source_system} / {summary.location_id}", title_justify="left")
    for column in ("file", "entity", "status", "read", "loaded", "quarantined", "seconds"):
        table.add_column(column, justify="right" if column in {"read", "loaded", "quarantined", "seconds"} else "left")
    for f in summary.files:
        table.add_row(
            f.file,
            f.entity,
            f.status,
            str(f.rows_read),
            str(f.rows_loaded),
            str(f.rows_quarantined),
            f"{f.seconds:.2f}",
        )
    console.print(table)
    for f in summary.files:
        if f.message and f.status == "rejected":
            console.print(f"[red]rejected[/] {f.file}: {f.message}")
        for warning in f.warnings:
            console.print(f"[yellow]warning[/] {f.file}: {warning}")
    if summary.unrecognised:
        console.print(f"[yellow]not loaded (no mapping for these files):[/] {', '.join(summary.unrecognised)}")
    totals = summary.totals
    console.print(
        f"{totals['files']} file(s): {totals['loaded']} loaded, {totals['skipped_duplicate']} already loaded, "
        f"{totals['rejected']} rejected; {totals['rows_read']} rows read = {totals['rows_loaded']} loaded "
        f"+ {totals['rows_quarantined']} quarantined"
    )


def _describe(stage: str, summary: dict) -> str:
    if stage == "ingest":
        t = summary.get("totals", {})
        return (
            f"{t.get('files', 0)} files ({t.get('loaded', 0)} loaded, {t.get('skipped_duplicate', 0)} already loaded, "
            f"{t.get('rejected', 0)} rejected); rows read {t.get('rows_read', 0)} = loaded {t.get('rows_loaded', 0)} "
            f"+ quarantined {t.get('rows_quarantined', 0)}"
        )
    if stage == "transform":
        nodes = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("nodes", {}).items()))
        return f"dbt build: {nodes or 'nothing ran'} in {summary.get('seconds', 0)} s"
    if stage == "plan":
        status = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("batch_status", {}).items())) or "no batches"
        capped = sum(summary.get("capped", {}).values())
        return (
            f"{summary.get('touches_planned', 0)} touches planned ({status}); "
            f"{summary.get('episodes_started', 0)} episodes started, "
            f"{sum(summary.get('episodes_ended', {}).values())} ended; {capped} held back by caps"
            + ("; already planned earlier" if summary.get("already_planned") else "")
        )
    if stage == "send":
        accepted = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("accepted_by_channel", {}).items()))
        states = ", ".join(f"{v} {k}" for k, v in sorted(summary.get("outbox", {}).items()))
        return f"accepted: {accepted or 'none'}; outbox: {states or 'empty'}"
    if stage == "report":
        return f"report written ({summary.get('path', '?').rsplit('/', 1)[-1]})"
    if stage == "quality_gate" and summary.get("headline"):
        return str(summary["headline"])
    headline = summary.get("headline")
    return (
        str(headline)
        if headline
        else ", ".join(f"{k}={v}" for k, v in summary.items() if not isinstance(v, dict | list))
    )


def print_stage_summaries(results: list[tuple[str, str, dict]]) -> None:
    table = Table(title="Stages", title_justify="left")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("summary", overflow="fold")
    for stage, status, summary in results:
        colour = {"success": "green", "warning": "yellow", "failed": "red", "blocked": "red"}.get(status, "white")
        table.add_row(stage, f"[{colour}]{status}[/]", _describe(stage, summary))
    if not results:
        table.add_row("-", "[red]none[/]", "no stage recorded a result; see the Airflow log")
    console.print(table)


def print_batches(rows: list[dict]) -> None:
    table = Table(title="Outreach batches", title_justify="left")
    for column in ("batch", "status", "items", "decided by", "blocked because"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["batch_id"],
            row["status"],
            str(row["items"]),
            row["decided_by"] or "",
            "; ".join(row["blocked_reasons"] or []),
        )
    if not rows:
        table.add_row("-", "-", "0", "", "")
    console.print(table)
