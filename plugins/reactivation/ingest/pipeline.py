"""Load a file or folder of extracts with one adapter, reporting per file and entity."""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from reactivation.ingest.contract import ENTITIES
from reactivation.ingest.loader import FileResult, LoadContext, load_file, reserve_load_ids
from reactivation.ingest.mapping import SourceMapping, load_mapping, native_mapping, synthea_mapping
from reactivation.settings import get_settings
from reactivation.warehouse import WarehouseUnavailable, connect, ensure_schema

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


def _schedule(planned: list[tuple[Path, object]]) -> tuple[list[int], list[list[int]]]:
    """Split the planned files (by position) into what must load first and groups that may load at once.

    Locations files go first, one after another: a one-location extract's zone is read from them for the
    naive timestamps of every later file. The rest are grouped by entity, each group in plan order, because
    files of one entity interact (the same bytes twice is a no-op; a corrected file supersedes an earlier
    one); different entities share nothing but the manifest. Largest groups first, so the last to finish is
    a small one.
    """
    first = [i for i, (_, m) in enumerate(planned) if m.entity == "locations"]
    groups: dict[str, list[int]] = {}
    for i, (_, m) in enumerate(planned):
        if m.entity != "locations":
            groups.setdefault(m.entity, []).append(i)
    ordered = sorted(groups.values(), key=lambda group: -sum(planned[i][0].stat().st_size for i in group))
    return first, ordered


def load_path(
    url: str,
    path: Path,
    *,
    fmt: str | None = None,
    mapping_file: Path | None = None,
    location: str | None = None,
    extract_date: date | None = None,
    show_progress: bool = False,
    workers: int | None = None,
) -> LoadSummary:
    """Load every recognised file under ``path``; bad files are reported, never raised.

    Each file is committed on its own. Up to ``workers`` files (default: the REACTIVATION_INGEST_WORKERS
    setting) load at once, each on its own connection, after the locations files (see ``_schedule``). Load
    ids are reserved up front in file order, so the manifest and the summary list files in the same order
    whatever the number of workers. If a load raises (not a bad file: those are results), no further file
    starts, the files already loading finish and commit, and the error is raised.
    """
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
    first, groups = _schedule(planned)
    workers = max(1, workers if workers is not None else get_settings().reactivation_ingest_workers)

    ensure_schema(url)
    started = time.monotonic()
    progress_bar = None
    callbacks: list[Callable[[int], None] | None] = [None] * len(planned)
    if show_progress:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

        progress_bar = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=False
        )
        progress_bar.start()
        for i, (file, file_mapping) in enumerate(planned):  # every file's bar up front, in file order
            task_id = progress_bar.add_task(f"{file.name} → {file_mapping.entity}", total=file.stat().st_size)
            callbacks[i] = functools.partial(progress_bar.advance, task_id)
    results: list[FileResult | None] = [None] * len(planned)

    def load_one(conn, i: int, context: LoadContext, load_id: int) -> FileResult:
        file, file_mapping = planned[i]
        rows_source = None
        if fmt == "fhir" and mapping_file is None:
            from reactivation.ingest.fhir import rows_source_for

            rows_source = rows_source_for(file, file_mapping.entity, callbacks[i])
        result = load_file(
            conn, file, file_mapping, context, progress=callbacks[i], rows_source=rows_source, load_id=load_id
        )
        results[i] = result
        return result

    try:
        # autocommit: each load_file commits its file in a transaction of its own, and nothing else here may
        # leave one open (a plain connection's first query would, turning every later file into a savepoint).
        with connect(url, autocommit=True) as conn:
            load_ids = reserve_load_ids(conn, len(planned))
            for i in first:
                result = load_one(conn, i, context, load_ids[i])
                if mapping.timezone is None:
                    context = _with_location_timezone(conn, context, result)
            later = context  # the zone the locations files gave, for every other file

            def load_later(worker_conn, i: int) -> None:
                load_one(worker_conn, i, later, load_ids[i])

            _load_groups(url, conn, groups, min(workers, len(groups)), load_later)
    finally:
        if progress_bar is not None:
            progress_bar.stop()
    summary.files = [result for result in results if result is not None]
    summary.seconds = time.monotonic() - started
    return summary


def _load_groups(url: str, conn, groups: list[list[int]], workers: int, load_one: Callable) -> None:
    """Load each group's files in order; up to ``workers`` groups at once, each thread on its own connection.

    Threads, not processes: the per-row Python work still runs one file at a time under the GIL; what
    overlaps is another file's PostgreSQL work (COPY, index, duplicate pass, commit) and hashing, outside
    it (about 12% less wall time on the benchmark, see bench/README.md). A worker that cannot open its
    connection leaves its share to the others.
    """
    if workers <= 1:
        for i in sorted(i for group in groups for i in group):  # plan order
            load_one(conn, i)
        return
    pending = list(reversed(groups))
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(own_conn) -> None:
        try:
            while not stop.is_set():
                with lock:
                    if not pending:
                        return
                    group = pending.pop()
                for i in group:
                    if stop.is_set():
                        return
                    load_one(own_conn, i)
        except BaseException as err:
            errors.append(err)
            stop.set()

    def work_on_new_connection() -> None:
        try:
            own_conn = connect(url, autocommit=True)
        except WarehouseUnavailable as err:
            log.warning("ingest worker without a connection, the others load its files: %s", err)
            return
        with own_conn:
            work(own_conn)

    threads = [
        threading.Thread(target=work_on_new_connection, name=f"ingest-worker-{n}", daemon=True)
        for n in range(1, workers)
    ]
    for thread in threads:
        thread.start()
    work(conn)  # this thread is the first worker, on the connection it already has
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
