"""Load one extract file into the raw layer: streamed, checked, all or nothing.

For each file the loader:

1. hashes it (sha256) and checks its encoding in one pass; a file already
   loaded for the same source, location and entity is a no-op;
2. maps its header onto the contract (a missing required column rejects the
   file with a message naming it; unmapped columns are kept in ``extra``);
3. streams rows through validation into PostgreSQL ``COPY`` in batches, so
   memory does not grow with the file; bad rows go to ``raw.quarantine`` with
   line, column and reason;
4. moves exact duplicate rows to quarantine, checks rows read = loaded +
   quarantined, marks an earlier file for the same extract date superseded,
   and commits: the file's rows become visible all at once or not at all.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg

from reactivation.ingest import normalise
from reactivation.ingest.contract import ENTITIES, SEXES, Entity
from reactivation.ingest.mapping import ColumnRule, FileMapping

log = logging.getLogger(__name__)

COPY_BATCH_BYTES = 4 * 1024 * 1024
_DATE_IN_NAME = re.compile(r"(20\d{2}|19\d{2})-?([01]\d)-?([0-3]\d)")

csv.field_size_limit(16 * 1024 * 1024)


class FileRejected(Exception):
    """The whole file cannot be loaded (the message says why and what to do)."""


@dataclass
class FileResult:
    file: str
    entity: str
    status: str  # loaded | skipped_duplicate | rejected
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    seconds: float = 0.0
    load_id: int | None = None
    superseded: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LoadContext:
    source_system: str
    location_id: str
    timezone: str = "UTC"
    phone_region: str = "US"
    encoding: str | None = None
    extract_date: date | None = None


class _CountingReader(io.RawIOBase):
    """A raw reader that reports bytes read, for the progress bar."""

    def __init__(self, raw: io.BufferedReader, callback: Callable[[int], None] | None) -> None:
        self.raw = raw
        self.callback = callback

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        if self.callback and n:
            self.callback(n)
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


def fingerprint(path: Path, declared_encoding: str | None) -> tuple[str, str, list[str]]:
    """Return (sha256, encoding to read with, warnings) after one pass over the bytes."""
    sha = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            if utf8_ok:
                try:
                    utf8.decode(chunk)
                except UnicodeDecodeError:
                    utf8_ok = False
        if utf8_ok:
            try:
                utf8.decode(b"", final=True)
            except UnicodeDecodeError:
                utf8_ok = False
    warnings: list[str] = []
    if declared_encoding:
        return sha.hexdigest(), declared_encoding, warnings
    if utf8_ok:
        return sha.hexdigest(), "utf-8-sig", warnings
    cp1252 = codecs.getincrementaldecoder("cp1252")()
    encoding = "cp1252"
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(1 << 20):
                cp1252.decode(chunk)
        except UnicodeDecodeError:
            encoding = "latin-1"
    warnings.append(f"file is not valid UTF-8; read as {encoding}")
    return sha.hexdigest(), encoding, warnings


def extract_date_for(path: Path, given: date | None) -> date:
    if given:
        return given
    match = _DATE_IN_NAME.search(path.name)
    if match:
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            pass
    return datetime.fromtimestamp(path.stat().st_mtime, tz=UTC).date()


# -- row compilation ---------------------------------------------------------------------------


def _parser_for(column_type: str, mapping: FileMapping) -> Callable[[str], str] | None:
    if column_type == "date":
        formats = mapping.date_formats
        return lambda v: normalise.parse_date(v, formats)
    if column_type == "timestamp":
        formats, date_formats = mapping.timestamp_formats, mapping.date_formats
        return lambda v: normalise.parse_timestamp(v, formats, date_formats)
    if column_type == "boolean":
        return normalise.parse_boolean
    if column_type == "timezone":
        return normalise.parse_timezone
    if column_type == "numeric":
        return normalise.parse_numeric
    return None


def _transform(name: str | None) -> Callable[[str], str] | None:
    if name is None:
        return None
    if name == "present":
        return lambda v: "true" if v.strip() else "false"
    if name == "upper":
        return str.upper
    if name == "lower":
        return str.lower
    if name == "digits":
        return lambda v: "".join(ch for ch in v if ch.isdigit())
    if name == "state_timezone":
        return lambda v: normalise.timezone_for_state(v) or ""

    def _is_number(v: str) -> bool:
        try:
            float(v)
        except ValueError:
            return False
        return True

    if name == "numeric_or_empty":
        return lambda v: v if _is_number(v) else ""
    if name == "text_if_not_numeric":
        return lambda v: "" if _is_number(v) else v
    raise ValueError(name)


@dataclass
class _CompiledColumn:
    name: str
    index: int  # -1: no source column
    rule: ColumnRule | None
    parse: Callable[[str], str] | None
    transform: Callable[[str], str] | None
    allowed: frozenset[str]
    required: bool
    code: Callable[[str], str]


def _code_normaliser(allowed: tuple[str, ...]) -> Callable[[str], str]:
    """Codes compare case-insensitively; spaces and hyphens read as underscores (No-Show → no_show)."""
    canonical = {code.lower(): code for code in allowed}
    if allowed == SEXES:
        return lambda v: canonical.get(v.strip()[:1].lower(), v)
    return lambda v: canonical.get(v.strip().lower().replace("-", "_").replace(" ", "_"), v)


class RowPlan:
    """Turns one source row (a list of strings) into one contract row, or a list of problems."""

    def __init__(self, entity: Entity, mapping: FileMapping, header: list[str], context: LoadContext) -> None:
        self.entity = entity
        self.context = context
        self.warnings: list[str] = []
        lookup = {h.strip(): i for i, h in enumerate(header)}
        lookup_ci = {h.strip().lower(): i for i, h in enumerate(header)}
        used: set[int] = set()
        missing: list[str] = []
        self.columns: list[_CompiledColumn] = []
        for column in entity.columns:
            rule = mapping.rules.get(column.name)
            index = -1
            if rule is not None and rule.source is not None:
                index = lookup.get(rule.source, lookup_ci.get(rule.source.lower(), -1))
                if index >= 0:
                    used.add(index)
            has_fallback = rule is not None and (rule.constant is not None or rule.default is not None)
            renamed = rule is not None and rule.source is not None and rule.source != column.name
            if index < 0 and renamed and not column.required and not has_fallback:
                self.warnings.append(f"column {rule.source} (for {column.name}) is not in the file; left empty")
            if column.required and index < 0 and not has_fallback:
                wanted = rule.source if rule is not None and rule.source else column.name
                missing.append(wanted if wanted == column.name else f"{wanted} (for {column.name})")
            self.columns.append(
                _CompiledColumn(
                    name=column.name,
                    index=index,
                    rule=rule,
                    parse=_parser_for(column.type, mapping),
                    transform=_transform(rule.transform) if rule else None,
                    allowed=frozenset(column.allowed),
                    required=column.required,
                    code=_code_normaliser(column.allowed),
                )
            )
        if missing:
            raise FileRejected(
                f"missing required column(s): {', '.join(missing)}. The header has {len(header)} column(s); "
                f"fix the export or map the columns in a source mapping."
            )
        drop = {name.lower() for name in mapping.drop}
        dropped = {i for i, h in enumerate(header) if h.strip().lower() in drop}
        self.extra_columns = [(i, header[i].strip()) for i in range(len(header)) if i not in used and i not in dropped]
        self.width = len(header)
        self.derive = _DERIVERS.get(entity.name)

    def apply(self, row: list[str]) -> tuple[list[str | None] | None, list[tuple[str, str]]]:
        if len(row) != self.width:
            kind = "fewer" if len(row) < self.width else "more"
            return None, [
                ("", f"row has {len(row)} fields, {kind} than the header's {self.width} (truncated or ragged row)")
            ]
        out: list[str | None] = []
        problems: list[tuple[str, str]] = []
        for col in self.columns:
            rule = col.rule
            value = row[col.index].strip() if col.index >= 0 else ""
            if rule is not None:
                if rule.constant is not None:
                    value = rule.constant
                if col.transform is not None:
                    value = col.transform(value)
                if rule.values is not None and value in rule.values:
                    value = rule.values[value]
                if not value and rule.default is not None:
                    value = rule.default
            if not value:
                if col.required:
                    problems.append((col.name, "required value is missing"))
                out.append(None)
                continue
            if col.allowed:
                normalised = col.code(value)
                if normalised not in col.allowed:
                    problems.append((col.name, f"value not allowed (expected one of {', '.join(sorted(col.allowed))})"))
                    out.append(None)
                    continue
                value = normalised
            if col.parse is not None:
                try:
                    value = col.parse(value)
                except ValueError as err:
                    problems.append((col.name, str(err)))
                    out.append(None)
                    continue
            out.append(value)
        if problems:
            return None, problems
        if self.derive is not None:
            out.extend(self.derive(self, out))
        if self.extra_columns:
            extra = {name: row[i] for i, name in self.extra_columns if row[i] != ""}
            out.append(json.dumps(extra, ensure_ascii=False) if extra else None)
        else:
            out.append(None)
        return out, []


def _derive_patient(plan: RowPlan, out: list[str | None]) -> list[str | None]:
    names = plan.entity.column_names
    phone = out[names.index("phone")]
    email = out[names.index("email")]
    e164, phone_valid = normalise.normalise_phone(phone, plan.context.phone_region)
    email_norm, email_valid = normalise.normalise_email(email)
    return [
        e164,
        None if phone_valid is None else str(phone_valid).lower(),
        email_norm,
        None if email_valid is None else str(email_valid).lower(),
    ]


def _derive_location(plan: RowPlan, out: list[str | None]) -> list[str | None]:
    phone = out[plan.entity.column_names.index("phone")]
    e164, valid = normalise.normalise_phone(phone, plan.context.phone_region)
    return [e164 if valid else None]


_DERIVERS: dict[str, Callable[[RowPlan, list[str | None]], list[str | None]]] = {
    "patients": _derive_patient,
    "locations": _derive_location,
}


# -- loading ----------------------------------------------------------------------------------


def _csv_rows(
    path: Path, encoding: str, delimiter: str, progress: Callable[[int], None] | None
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number of the row's first line, fields). Handles BOM, CRLF and quoted newlines."""
    raw = path.open("rb")
    text = io.TextIOWrapper(
        io.BufferedReader(_CountingReader(raw, progress), 1 << 20), encoding=encoding, errors="strict", newline=""
    )
    try:
        reader = csv.reader(text, delimiter=delimiter, strict=False)
        start = 1
        for row in reader:
            yield start, row
            start = reader.line_num + 1
    finally:
        text.close()


def _copy_sql(entity: Entity) -> str:
    cols = ["load_id", "source_line", "source_system", "location_id_loaded"]
    cols += [c.name for c in entity.table_columns] + ["extra"]
    return f"copy raw.{entity.name} ({', '.join(cols)}) from stdin with (format csv)"


def _dedupe_sql(entity: Entity) -> str:
    cols = ", ".join([c.name for c in entity.table_columns] + ["extra::text"])
    return f"""
with ranked as (
    select ctid as row_ref, source_line,
           row_number() over (partition by {cols} order by source_line) as copy_number,
           min(source_line) over (partition by {cols}) as first_line
    from raw.{entity.name}
    where load_id = %(load_id)s
),
removed as (
    delete from raw.{entity.name} as target
    using ranked
    where target.ctid = ranked.row_ref and ranked.copy_number > 1 and target.load_id = %(load_id)s
    returning target.source_line, ranked.first_line
)
insert into raw.quarantine (load_id, source_line, column_name, reason)
select %(load_id)s, source_line, null, 'exact duplicate of line ' || first_line
from removed
"""


def load_file(
    conn: psycopg.Connection,
    path: Path,
    mapping: FileMapping,
    context: LoadContext,
    *,
    progress: Callable[[int], None] | None = None,
    rows_source: Callable[[], tuple[list[str], Iterable[tuple[int, list[str]]]]] | None = None,
) -> FileResult:
    """Load ``path`` as ``mapping.entity``. Never raises for bad input: returns a rejected result instead.

    ``rows_source`` lets non-CSV adapters (FHIR NDJSON) supply a header and rows themselves.
    """
    started = time.monotonic()
    entity = ENTITIES[mapping.entity]
    result = FileResult(file=path.name, entity=entity.name, status="loaded")
    sha, encoding, warnings = fingerprint(path, context.encoding)
    result.warnings.extend(warnings)
    extract_date = extract_date_for(path, context.extract_date)
    size = path.stat().st_size
    key = (context.source_system, context.location_id, entity.name)

    with conn.transaction():
        existing = conn.execute(
            """select load_id from raw.load_manifest
               where source_system = %s and location_id = %s and entity = %s and sha256 = %s
                 and status in ('loaded', 'superseded')""",
            (*key, sha),
        ).fetchone()
    if existing:
        result.status = "skipped_duplicate"
        result.load_id = existing[0]
        result.message = f"already loaded as load {existing[0]}; nothing to do"
        result.seconds = round(time.monotonic() - started, 3)
        return result

    try:
        with conn.transaction():
            load_id = conn.execute(
                """insert into raw.load_manifest
                   (source_system, location_id, entity, file_name, file_size, sha256, extract_date, encoding,
                    status, warnings)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, 'loading', %s::jsonb) returning load_id""",
                (*key, path.name, size, sha, extract_date, encoding, json.dumps(warnings)),
            ).fetchone()[0]
            result.load_id = load_id
            conn.execute("select set_config('TimeZone', %s, true)", (context.timezone,))
            _stream_rows(conn, path, mapping, context, entity, load_id, encoding, result, progress, rows_source)
            duplicates = conn.execute(_dedupe_sql(entity), {"load_id": load_id}).rowcount
            result.rows_loaded -= duplicates
            result.rows_quarantined += duplicates
            if result.rows_read != result.rows_loaded + result.rows_quarantined:
                raise RuntimeError(f"row accounting failed for load {load_id}")  # the check constraint agrees
            superseded = conn.execute(
                """update raw.load_manifest set status = 'superseded', superseded_by = %s
                   where source_system = %s and location_id = %s and entity = %s and file_name = %s
                     and extract_date = %s and status = 'loaded' and load_id <> %s
                   returning load_id""",
                (load_id, *key, path.name, extract_date, load_id),
            ).fetchall()
            result.superseded = [row[0] for row in superseded]
            conn.execute(
                """update raw.load_manifest
                   set status = 'loaded', rows_read = %s, rows_loaded = %s, rows_quarantined = %s,
                       finished_at = now(), warnings = %s::jsonb
                   where load_id = %s""",
                (
                    result.rows_read,
                    result.rows_loaded,
                    result.rows_quarantined,
                    json.dumps(result.warnings),
                    load_id,
                ),
            )
    except FileRejected as err:
        result.status = "rejected"
        result.message = str(err)
        result.rows_loaded = 0
        _record_rejection(conn, key, path, size, sha, extract_date, encoding, result)
    except UnicodeDecodeError as err:
        result.status = "rejected"
        result.message = f"cannot decode the file as {encoding} at byte {err.start}; declare its encoding"
        result.rows_loaded = 0
        _record_rejection(conn, key, path, size, sha, extract_date, encoding, result)
    result.seconds = round(time.monotonic() - started, 3)
    log.info(
        "load %s entity=%s status=%s read=%d loaded=%d quarantined=%d",
        result.load_id,
        entity.name,
        result.status,
        result.rows_read,
        result.rows_loaded,
        result.rows_quarantined,
    )
    return result


def _record_rejection(conn, key, path, size, sha, extract_date, encoding, result: FileResult) -> None:
    with conn.transaction():
        result.load_id = conn.execute(
            """insert into raw.load_manifest
               (source_system, location_id, entity, file_name, file_size, sha256, extract_date, encoding,
                rows_read, status, message, warnings, finished_at)
               values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'rejected', %s, %s::jsonb, now()) returning load_id""",
            (*key, path.name, size, sha, extract_date, encoding, result.rows_read, result.message,
             json.dumps(result.warnings)),
        ).fetchone()[0]  # fmt: skip


def _stream_rows(
    conn: psycopg.Connection,
    path: Path,
    mapping: FileMapping,
    context: LoadContext,
    entity: Entity,
    load_id: int,
    encoding: str,
    result: FileResult,
    progress: Callable[[int], None] | None,
    rows_source,
) -> None:
    if rows_source is not None:
        header, rows = rows_source()
    else:
        rows_iter = _csv_rows(path, encoding, mapping.delimiter, progress)
        first = next(rows_iter, None)
        if first is None or not any(cell.strip() for cell in first[1]):
            raise FileRejected("the file is empty (no header row); ask the source for a complete extract")
        header, rows = first[1], rows_iter
    if header and header[0].startswith("\ufeff"):
        header = [header[0].lstrip("\ufeff"), *header[1:]]  # a BOM under a declared encoding
    plan = RowPlan(entity, mapping, header, context)
    result.warnings.extend(plan.warnings)

    prefix_fixed = [context.source_system, context.location_id]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    # Bad rows are spooled (to disk past 8 MB) and copied in after the data, keeping memory flat.
    with (
        tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+", newline="") as quarantine_spool,
        conn.cursor() as cur,
    ):
        quarantine_writer = csv.writer(quarantine_spool, lineterminator="\n")
        with cur.copy(_copy_sql(entity)) as copy:
            for line, row in rows:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line: not a row
                result.rows_read += 1
                values, problems = plan.apply(row)
                if values is None:
                    column = problems[0][0] or None
                    reason = "; ".join(f"{c}: {r}" if c else r for c, r in problems)
                    record = mapping.delimiter.join(row)
                    quarantine_writer.writerow([load_id, line, column, reason, record])
                    result.rows_quarantined += 1
                    continue
                writer.writerow([load_id, line, *prefix_fixed, *values])
                result.rows_loaded += 1
                if buffer.tell() >= COPY_BATCH_BYTES:
                    copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
            if buffer.tell():
                copy.write(buffer.getvalue())
        if result.rows_quarantined:
            quarantine_spool.seek(0)
            with cur.copy(
                "copy raw.quarantine (load_id, source_line, column_name, reason, record) from stdin with (format csv)"
            ) as copy:
                while chunk := quarantine_spool.read(1 << 20):
                    copy.write(chunk)
    if result.rows_read == 0:
        result.warnings.append("the file has a header but no rows")
