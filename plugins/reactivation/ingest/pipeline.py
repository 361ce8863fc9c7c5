"""Load a file or folder of extracts with one adapter, reporting per file and entity."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.loader import FileResult, LoadContext, load_file
from reactivation.ingest.mapping import SourceMapping, load_mapping, native_mapping, synthea_mapping
from reactivation.warehouse import connect, ensure_schema

log = logging.getLogger(__name__)

FORMATS = ("csv", "fhir", "synthea")


class LoadError(ValueError):
    """The load cannot start (bad path, bad options); nothing was written."""


@dataclass
class LoadSummary:
    source_system: str
    location_id: str
    files: list[FileResult] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        return {
            "files": len(self.files),
            "loaded": sum(1 for f in self.files if f.status == "loaded"),
            "skipped_duplicate": sum(1 for f in self.files if f.status == "skipped_duplicate"),
            "rejected": sum(1 for f in self.files if f.status == "rejected"),
            "rows_read": sum(f.rows_read for f in self.files),
            "rows_loaded": sum(f.rows_loaded for f in self.files),
            "rows_quarantined": sum(f.rows_quarantined for f in self.files),
        }

    def as_dict(self) -> dict:
        return {
            "source_system": self.source_system,
            "location_id": self.location_id,
            "seconds": round(self.seconds, 3),
            "totals": self.totals,
            "files": [f.as_dict() for f in self.files],
            "unrecognised_files": self.unrecognised,
        }


def resolve_mapping(fmt: str | None, mapping_file: Path | None) -> SourceMapping:
    if mapping_file is not None:
        return load_mapping(mapping_file)
    if fmt == "csv":
        return native_mapping()
    if fmt == "synthea":
        return synthea_mapping()
    if fmt == "fhir":
        from reactivation.ingest.fhir import fhir_mapping

        return fhir_mapping()
    raise LoadError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)} or --mapping FILE.yml")


def _files_in(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    raise LoadError(f"no such file or folder: {path}")


def _with_location_timezone(conn, context: LoadContext, result: FileResult) -> LoadContext:
    """A one-location extract's naive timestamps are local to that location."""
    if result.status not in {"loaded", "skipped_duplicate"} or result.load_id is None:
        return context
    zones = conn.execute(
        "select distinct timezone from raw.locations where load_id = %s and timezone is not null", (result.load_id,)
    ).fetchall()
    if len(zones) != 1:
        return context
    return dataclasses.replace(context, timezone=zones[0][0])


def load_path(
    url: str,
    path: Path,
    *,
    fmt: str | None = None,
    mapping_file: Path | None = None,
    location: str | None = None,
    extract_date: date | None = None,
    show_progress: bool = False,
) -> LoadSummary:
    """Load every recognised file under ``path``; bad files are reported, never raised."""
    mapping = resolve_mapping(fmt, mapping_file)
    files = _files_in(path)
    location_id = location or mapping.location or (path if path.is_dir() else path.parent).resolve().name
    context = LoadContext(
        source_system=mapping.source_system,
        location_id=str(location_id),
        timezone=mapping.timezone or "UTC",
        phone_region=mapping.phone_region,
        encoding=mapping.encoding,
        extract_date=extract_date,
    )
    summary = LoadSummary(source_system=context.source_system, location_id=context.location_id)
    planned = []
    for file in files:
        file_mapping = mapping.mapping_for(file.name)
        if file_mapping is None:
            if not mapping.is_ignored(file.name):
                summary.unrecognised.append(file.name)
            continue
        planned.append((file, file_mapping))
    order = list(ENTITIES)
    planned.sort(key=lambda item: (order.index(item[1].entity), item[0].name))

    ensure_schema(url)
    started = time.monotonic()
    progress_bar = None
    if show_progress:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=False
        )
        progress_bar.start()
    try:
        with connect(url) as conn:
            for file, file_mapping in planned:
                callback = None
                if progress_bar is not None:
                    task_id = progress_bar.add_task(f"{file.name} → {file_mapping.entity}", total=file.stat().st_size)

                    def callback(n: int, task_id=task_id) -> None:
                        progress_bar.advance(task_id, n)

                rows_source = None
                if fmt == "fhir" and mapping_file is None:
                    from reactivation.ingest.fhir import rows_source_for

                    rows_source = rows_source_for(file, file_mapping.entity, callback)
                result = load_file(conn, file, file_mapping, context, progress=callback, rows_source=rows_source)
                summary.files.append(result)
                if file_mapping.entity == "locations" and mapping.timezone is None:
                    context = _with_location_timezone(conn, context, result)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    summary.seconds = time.monotonic() - started
    return summary
