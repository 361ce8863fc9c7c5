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

Speed: the per-row Python work is what a load costs, so rows are handled in
batches, column by column (``RowPlan.apply_batch``: bulk string operations and
per-column memos, with ``RowPlan.apply`` as the per-row reference and the source
of quarantine reasons), written as COPY text from a writer thread, and the
duplicate pass runs only when an in-memory check cannot rule duplicates out.
``bench/ingest_bench.py`` compares the loader with psql \\copy, pandas and Airflow.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gc
import hashlib
import io
import json
import logging
import queue
import re
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from itertools import chain, compress, islice, repeat
from pathlib import Path

import numpy as np
import psycopg
from psycopg.copy import LibpqWriter, Writer

from reactivation.ingest import normalise
from reactivation.ingest.contract import ENTITIES, SEXES, Column, Entity
from reactivation.ingest.mapping import ColumnRule, FileMapping

log = logging.getLogger(__name__)

COPY_BATCH_ROWS = 4096  # rows read, checked and sent to COPY at a time
MEMO_LIMIT = 8192  # distinct values remembered per column (see _Memo)
DUPLICATE_GUARD_LIMIT = 2_000_000  # rows per file checked for duplicates in memory: 16 MB (see _DuplicateGuard)
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


@dataclass
class Fingerprint:
    """What one pass over a file's bytes tells before loading it."""

    sha256: str
    encoding: str  # to read with
    warnings: list[str]
    lines: int  # physical lines (LF, CRLF or CR; a last line without a break counts)
    has_nul: bool


def fingerprint(path: Path, declared_encoding: str | None) -> Fingerprint:
    """One pass over the bytes: checksum, encoding, line count (see ``Fingerprint``)."""
    sha = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    breaks, last, has_nul = 0, b"", False
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha.update(chunk)
            breaks += chunk.count(b"\n")
            if b"\r" in chunk:  # CR or CRLF line ends: a CR ends a line unless an LF follows it
                breaks += chunk.count(b"\r") - chunk.count(b"\r\n")
            if last == b"\r" and chunk[:1] == b"\n":
                breaks -= 1  # a CRLF split between two reads
            last = chunk[-1:]
            has_nul = has_nul or b"\x00" in chunk
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
    lines = breaks + (1 if last not in (b"", b"\n", b"\r") else 0)
    warnings: list[str] = []
    if declared_encoding:
        return Fingerprint(sha.hexdigest(), declared_encoding, warnings, lines, has_nul)
    if utf8_ok:
        return Fingerprint(sha.hexdigest(), "utf-8-sig", warnings, lines, has_nul)
    cp1252 = codecs.getincrementaldecoder("cp1252")()
    encoding = "cp1252"
    with path.open("rb") as handle:
        try:
            while chunk := handle.read(1 << 20):
                cp1252.decode(chunk)
        except UnicodeDecodeError:
            encoding = "latin-1"
    warnings.append(f"file is not valid UTF-8; read as {encoding}")
    return Fingerprint(sha.hexdigest(), encoding, warnings, lines, has_nul)


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
    type: str  # the contract column's type
    index: int  # -1: no source column
    rule: ColumnRule | None
    parse: Callable[[str], str] | None
    transform: Callable[[str], str] | None
    allowed: frozenset[str]
    required: bool
    code: Callable[[str], str]

    def evaluate(self, raw: str) -> tuple[str | None, str | None]:
        """(value to store, problem) for one cell: the single definition used per row and per distinct value."""
        value = raw.strip()
        rule = self.rule
        if rule is not None:
            if rule.constant is not None:
                value = rule.constant
            if self.transform is not None:
                value = self.transform(value)
            if rule.values is not None and value in rule.values:
                value = rule.values[value]
            if not value and rule.default is not None:
                value = rule.default
        if not value:
            return None, ("required value is missing" if self.required else None)
        if self.allowed:
            normalised = self.code(value)
            if normalised not in self.allowed:
                return None, f"value not allowed (expected one of {', '.join(sorted(self.allowed))})"
            value = normalised
        if self.parse is not None:
            try:
                value = self.parse(value)
            except ValueError as err:
                return None, str(err)
        return value, None

    @property
    def _reads_cell_as_is(self) -> bool:
        """True when no mapping rule (constant, transform, value map, default) or code list applies."""
        rule = self.rule
        no_rule = rule is None or (
            rule.constant is None and rule.transform is None and rule.values is None and rule.default is None
        )
        return no_rule and not self.allowed

    @property
    def is_plain(self) -> bool:
        """True when the stored value is just the stripped cell."""
        return self._reads_cell_as_is and self.parse is None

    @property
    def is_plain_date(self) -> bool:
        """True for a date or timestamp column whose stored value is the parsed, stripped cell."""
        return self._reads_cell_as_is and self.type in _CANONICAL


# Dates and timestamps already written the way parse_date / parse_timestamp write them. For these, a
# successful fromisoformat means the parser would return the text unchanged (the time ranges are in the
# pattern, so fromisoformat only has the calendar left to check).
_CANONICAL = {
    "date": (re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"), date.fromisoformat),
    "timestamp": (
        re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"),
        datetime.fromisoformat,
    ),
}


def _canonical_dates(column: _CompiledColumn, memo: _CellMemo, cells: Sequence[str]) -> tuple[list[str], list[int]]:
    """(stored values, positions of cells with a problem) for a plain date or timestamp column.

    Why: dates and timestamps are the most frequent parsed values and often all distinct, so a memo does
    not help. Cells already written as parse_date / parse_timestamp write them are checked with C-level
    ``map`` calls and kept as they are; the others (empty, other formats) go through the column's memo.
    """
    pattern, check = _CANONICAL[column.type]
    values = list(map(str.strip, cells))
    matches = list(map(pattern.fullmatch, values))
    if all(matches):
        return values, _rejected(check, values, 0, len(values))
    odd = [i for i, match in enumerate(matches) if match is None]
    if len(odd) * 4 > len(values):  # mostly empty or in another format: the memo does it all
        return memo.map(cells), memo.bad_positions(cells)
    canonical = [i for i, match in enumerate(matches) if match is not None]
    bad = [canonical[i] for i in _rejected(check, [values[i] for i in canonical], 0, len(canonical))]
    odd_cells = [cells[i] for i in odd]
    for i, value in zip(odd, memo.map(odd_cells), strict=True):
        values[i] = value
    bad.extend(odd[i] for i in memo.bad_positions(odd_cells))
    return values, bad


def _rejected(check: Callable[[str], object], values: list[str], start: int, stop: int) -> list[int]:
    """Positions in [start, stop) of the values ``check`` raises ValueError for.

    The range is checked in one C-level pass; a failing range is halved, so a few bad values among
    thousands cost a few more passes, not a Python call per value.
    """
    try:
        deque(map(check, values[start:stop]), maxlen=0)
        return []
    except ValueError:
        if stop - start == 1:
            return [start]
        middle = (start + stop) // 2
        return _rejected(check, values, start, middle) + _rejected(check, values, middle, stop)


def _code_normaliser(allowed: tuple[str, ...]) -> Callable[[str], str]:
    """Codes compare case-insensitively; spaces and hyphens read as underscores (No-Show → no_show)."""
    canonical = {code.lower(): code for code in allowed}
    if allowed == SEXES:
        return lambda v: canonical.get(v.strip()[:1].lower(), v)
    return lambda v: canonical.get(v.strip().lower().replace("-", "_").replace(" ", "_"), v)


class _Memo:
    """A bounded cache of a pure function, applied to a whole column at once.

    Why: codes, dates, timestamps and phone numbers repeat a lot within a file, and the parsers are the
    costliest part of a row. The cache is emptied when it reaches ``limit`` entries, so memory stays flat
    whatever the file size.
    """

    def __init__(self, func: Callable[[str], object], limit: int = MEMO_LIMIT) -> None:
        self.func = func
        self.limit = limit
        self.cache: dict[str, object] = {}

    def map(self, values: Sequence[str]) -> list:
        cache = self.cache
        try:
            return list(map(cache.__getitem__, values))  # the common case: every value seen before
        except KeyError:
            pass
        fresh = set(values).difference(cache)
        if len(cache) + len(fresh) > self.limit:
            self.reset()
            fresh = set(values)
        self.fill(list(fresh))
        return list(map(cache.__getitem__, values))

    def fill(self, fresh: list[str]) -> None:
        """Compute and remember the results for values not in the cache."""
        func, cache = self.func, self.cache
        for value in fresh:
            cache[value] = func(value)

    def reset(self) -> None:
        self.cache.clear()


class _CellMemo(_Memo):
    """A column's stored text ('' for NULL) per distinct raw cell, remembering which cells have a problem."""

    def __init__(self, column: _CompiledColumn) -> None:
        super().__init__(self._evaluate)
        self.column = column
        self.bad: set[str] = set()

    def _evaluate(self, raw: str) -> str:
        value, problem = self.column.evaluate(raw)
        if problem is not None:
            self.bad.add(raw)
        return value or ""

    def reset(self) -> None:
        super().reset()
        self.bad.clear()

    def bad_positions(self, cells: Sequence[str]) -> list[int]:
        """Positions of cells with a problem (call after ``map`` on the same cells)."""
        if not self.bad or self.bad.isdisjoint(cells):
            return []
        return [i for i, raw in enumerate(cells) if raw in self.bad]


def _unzip(items: Sequence[tuple], width: int) -> list[tuple]:
    """Columns of a list of tuples (``width`` empty columns for an empty list)."""
    return list(zip(*items, strict=True)) if items else [()] * width


class RowPlan:
    """Turns source rows (lists of strings) into contract rows, or lists of problems.

    ``apply`` handles one row and is the reference; ``apply_batch`` gives the same results for many rows
    at once, column by column, which is what makes the loader fast (see ``apply_batch``).
    """

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
                    type=column.type,
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
        self.derivations = DERIVATIONS.get(entity.name, ())
        self.memos: dict[str, _Memo] = {}
        # Cells whose stored value is the stripped cell are stripped in bulk; the rest go through a memo.
        self._cell_memos = [None if c.is_plain else _CellMemo(c) for c in self.columns]

    def memo(self, name: str, func: Callable[[str], object]) -> _Memo:
        """The plan's memo called ``name`` (created with ``func`` on first use)."""
        if name not in self.memos:
            self.memos[name] = _Memo(func)
        return self.memos[name]

    def derivation_memo(self, derivation: Derivation) -> _Memo:
        """The memo of ``derivation``'s function: each distinct source value is normalised once per load."""
        name = f"derived:{derivation.source}"
        if name not in self.memos:
            self.memos[name] = _Memo(derivation.make(self.context))
        return self.memos[name]

    def derive(self, columns: Sequence[Sequence[str | None]]) -> list[Sequence[str | None]]:
        """The derived stored columns for rows given as stored columns."""
        names = self.entity.column_names
        derived: list[Sequence[str | None]] = []
        for derivation in self.derivations:
            results = self.derivation_memo(derivation).map(columns[names.index(derivation.source)])
            derived.extend(_unzip(results, derivation.width))
        return derived

    def apply(self, row: list[str]) -> tuple[list[str | None] | None, list[tuple[str, str]]]:
        if len(row) != self.width:
            kind = "fewer" if len(row) < self.width else "more"
            return None, [
                ("", f"row has {len(row)} fields, {kind} than the header's {self.width} (truncated or ragged row)")
            ]
        out: list[str | None] = []
        problems: list[tuple[str, str]] = []
        for col in self.columns:
            value, problem = col.evaluate(row[col.index] if col.index >= 0 else "")
            if problem is not None:
                problems.append((col.name, problem))
            out.append(value)
        if problems:
            return None, problems
        if self.derivations:
            out.extend(column[0] or None for column in self.derive([[v] for v in out]))
        if self.extra_columns:
            out.append(_extra_json(self.extra_columns, row))
        else:
            out.append(None)
        return out, []

    def apply_batch(self, rows: list[list[str]]) -> tuple[list[Sequence[str]], list[int]]:
        """Stored columns for ``rows`` ('' for NULL, derived and ``extra`` included) and the positions of bad rows.

        Every row must have the header's width. Values of bad rows are meaningless: ``apply`` tells what is
        wrong with them. Working column by column lets C loops (``zip``, ``map``, set and dict operations)
        do the per-row work: a cell is stripped in bulk, or looked up in the column's memo of
        ``_CompiledColumn.evaluate`` results, so each distinct value is parsed once.
        """
        cells = list(zip(*rows, strict=True))
        count = len(rows)
        columns: list[Sequence[str]] = []
        bad: set[int] = set()
        for col, memo in zip(self.columns, self._cell_memos, strict=True):
            source = cells[col.index] if col.index >= 0 else ("",) * count
            if memo is None:
                values = list(map(str.strip, source))
                if col.required and "" in values:
                    bad.update(i for i, v in enumerate(values) if not v)
            elif col.is_plain_date:
                values, invalid = _canonical_dates(col, memo, source)
                bad.update(invalid)
            else:
                values = memo.map(source)
                bad.update(memo.bad_positions(source))
            columns.append(values)
        if self.derivations:
            columns.extend([v or "" for v in column] for column in self.derive(columns))
        if self.extra_columns:
            columns.append([_extra_json(self.extra_columns, row) or "" for row in rows])
        else:
            columns.append(("",) * count)
        return columns, sorted(bad)


def _extra_json(extra_columns: list[tuple[int, str]], row: list[str]) -> str | None:
    """Unmapped, non-empty cells as a JSON object (None when there are none)."""
    extra = {name: row[i] for i, name in extra_columns if row[i] != ""}
    return json.dumps(extra, ensure_ascii=False) if extra else None


def _flag_text(flag: bool | None) -> str | None:
    return None if flag is None else str(flag).lower()


@dataclass(frozen=True)
class Derivation:
    """Stored columns computed from one contract column's stored value, one distinct value at a time."""

    source: str  # the contract column read
    width: int  # the stored columns produced, in table order
    make: Callable[[LoadContext], Callable[[str], tuple]]


def _phone_and_validity(context: LoadContext) -> Callable[[str], tuple]:
    def phone(value: str) -> tuple[str | None, str | None]:
        e164, valid = normalise.normalise_phone(value, context.phone_region)
        return e164, _flag_text(valid)

    return phone


def _email_and_validity(context: LoadContext) -> Callable[[str], tuple]:
    def email(value: str) -> tuple[str | None, str | None]:
        normalised, valid = normalise.normalise_email(value)
        return normalised, _flag_text(valid)

    return email


def _valid_phone(context: LoadContext) -> Callable[[str], tuple]:
    def phone(value: str) -> tuple[str | None]:
        e164, valid = normalise.normalise_phone(value, context.phone_region)
        return (e164 if valid else None,)

    return phone


# patients: phone_e164, phone_is_valid, email_normalised, email_is_valid; locations: phone_e164 (valid only).
DERIVATIONS: dict[str, tuple[Derivation, ...]] = {
    "patients": (Derivation("phone", 2, _phone_and_validity), Derivation("email", 2, _email_and_validity)),
    "locations": (Derivation("phone", 1, _valid_phone),),
}


# -- loading ----------------------------------------------------------------------------------


@contextmanager
def _text_of(path: Path, encoding: str, progress: Callable[[int], None] | None) -> Iterator[io.TextIOWrapper]:
    """The file as text, split into lines the way csv needs them (at CR, LF or CRLF, which are kept)."""
    raw = path.open("rb")
    text = io.TextIOWrapper(
        io.BufferedReader(_CountingReader(raw, progress), 1 << 20), encoding=encoding, errors="strict", newline=""
    )
    try:
        yield text
    finally:
        text.close()


def _csv_batches(text: io.TextIOWrapper, delimiter: str) -> Iterator[tuple[Sequence[int], list[list[str]]]]:
    """The file's rows in batches, with the line number each row starts on. Handles BOM, CRLF, quoted newlines.

    Why two ways: a batch of lines without a quote character holds one row per line, and splitting those
    lines on the delimiter gives exactly csv.reader's fields at a third of its cost. Lines with a quote
    (or anything unusual) go through csv.reader, which may read on past the batch to finish a quoted
    newline.
    """
    csv.reader([], delimiter=delimiter, strict=False)  # reject a bad delimiter the way csv always has
    plain_delimiter = len(delimiter) == 1 and delimiter not in '"\r\n'
    limit = csv.field_size_limit()
    next_line = 1
    while lines := list(islice(text, COPY_BATCH_ROWS)):
        chunk = "".join(lines)
        if plain_delimiter and '"' not in chunk and len(chunk) <= limit:
            rows = [stripped.split(delimiter) if stripped else [] for stripped in map(_strip_newline, lines)]
            numbers: Sequence[int] = range(next_line, next_line + len(lines))
            next_line += len(lines)
        else:
            numbers, rows, used = _csv_rows(lines, text, delimiter, next_line)
            next_line += used
        yield numbers, rows


def _strip_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _csv_rows(
    lines: list[str], text: io.TextIOWrapper, delimiter: str, first_line: int
) -> tuple[list[int], list[list[str]], int]:
    """csv.reader's rows starting in ``lines`` (read on from ``text`` to finish the last); also lines used."""
    reader = csv.reader(chain(lines, text), delimiter=delimiter, strict=False)
    numbers: list[int] = []
    rows: list[list[str]] = []
    start = first_line
    for row in reader:
        rows.append(row)
        numbers.append(start)
        start = first_line + reader.line_num
        if reader.line_num >= len(lines):
            break
    return numbers, rows, reader.line_num


def _without_header(
    batches: Iterator[tuple[Sequence[int], list[list[str]]]],
) -> tuple[list[str] | None, Iterator[tuple[Sequence[int], list[list[str]]]]]:
    """(the first row, the batches of the rows after it)."""
    first = next(batches, None)
    if first is None:
        return None, batches
    numbers, rows = first
    return rows[0], chain([(numbers[1:], rows[1:])], batches)


def _batches(pairs: Iterable[tuple[int, list[str]]]) -> Iterator[tuple[list[int], list[list[str]]]]:
    """(line, fields) pairs from a ``rows_source`` in the batches ``_csv_batches`` gives."""
    pairs = iter(pairs)
    while batch := list(islice(pairs, COPY_BATCH_ROWS)):
        lines, rows = _unzip(batch, 2)
        yield list(lines), list(rows)


COPY_PREFIX = ["load_id", "source_system", "location_id_loaded", "source_line"]


def _copy_sql(entity: Entity) -> str:
    """COPY in text format with '' as NULL: the loader never stores empty strings (an empty cell is NULL)."""
    cols = COPY_PREFIX + [c.name for c in entity.table_columns] + ["extra"]
    return f"copy raw.{entity.name} ({', '.join(cols)}) from stdin with (format text, null '')"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: Iterable[Sequence[str]], fields: int) -> str:
    """COPY text-format lines for ``rows`` of ``fields`` strings each.

    Values rarely contain a backslash, tab or line break, so the lines are first joined as they are and
    the result is checked with a few fast counts; only a batch that needs escaping is joined again with
    every value escaped.
    """
    rows = list(rows)
    text = "\n".join(map("\t".join, rows)) + "\n"
    clean = (
        text.count("\t") == len(rows) * (fields - 1)
        and text.count("\n") == len(rows)
        and "\\" not in text
        and "\r" not in text
    )
    if clean:
        return text
    return "".join("\t".join(value.translate(_COPY_ESCAPES) for value in row) + "\n" for row in rows)


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
    load_id: int | None = None,
) -> FileResult:
    """Load ``path`` as ``mapping.entity``. Never raises for bad input: returns a rejected result instead.

    The file is committed before this returns, in a transaction of its own, so ``conn`` must have none open
    (an autocommit connection is simplest). ``rows_source`` lets non-CSV adapters (FHIR NDJSON) supply a
    header and rows themselves. ``load_id``: the manifest id to use, reserved beforehand from the manifest's
    sequence (``reserve_load_ids``), so that ids follow the caller's file order even when files load at once;
    unset, the sequence's next value when the file starts.
    """
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # Each file commits on its own; inside the caller's transaction its "commit" would be a savepoint,
        # invisible to others until, and lost unless, the caller commits.
        raise ValueError("load_file needs a connection with no transaction open (use autocommit=True)")
    started = time.monotonic()
    entity = ENTITIES[mapping.entity]
    result = FileResult(file=path.name, entity=entity.name, status="loaded")
    facts = fingerprint(path, context.encoding)
    sha, encoding, warnings = facts.sha256, facts.encoding, facts.warnings
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
                   (load_id, source_system, location_id, entity, file_name, file_size, sha256, extract_date,
                    encoding, status, warnings)
                   values (coalesce(%s, nextval(pg_get_serial_sequence('raw.load_manifest', 'load_id'))),
                           %s, %s, %s, %s, %s, %s, %s, %s, 'loading', %s::jsonb) returning load_id""",
                (load_id, *key, path.name, size, sha, extract_date, encoding, json.dumps(warnings)),
            ).fetchone()[0]
            result.load_id = load_id
            conn.execute("select set_config('TimeZone', %s, true)", (context.timezone,))
            may_have_duplicates = _stream_rows(
                conn, path, mapping, context, entity, load_id, facts, result, progress, rows_source
            )
            duplicates = 0
            if may_have_duplicates:
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
        _record_rejection(conn, key, path, size, sha, extract_date, encoding, result, load_id)
    except UnicodeDecodeError as err:
        result.status = "rejected"
        result.message = f"cannot decode the file as {encoding} at byte {err.start}; declare its encoding"
        result.rows_loaded = 0
        _record_rejection(conn, key, path, size, sha, extract_date, encoding, result, load_id)
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


def reserve_load_ids(conn: psycopg.Connection, count: int) -> list[int]:
    """``count`` manifest ids from the manifest's sequence, ascending (an id left unused is a gap, as after a
    rollback)."""
    if count <= 0:
        return []
    rows = conn.execute(
        """select nextval(pg_get_serial_sequence('raw.load_manifest', 'load_id')) as load_id
           from generate_series(1, %s) order by load_id""",
        (count,),
    ).fetchall()
    return [row[0] for row in rows]


def _record_rejection(conn, key, path, size, sha, extract_date, encoding, result: FileResult, load_id) -> None:
    with conn.transaction():
        result.load_id = conn.execute(
            """insert into raw.load_manifest
               (load_id, source_system, location_id, entity, file_name, file_size, sha256, extract_date, encoding,
                rows_read, status, message, warnings, finished_at)
               values (coalesce(%s, nextval(pg_get_serial_sequence('raw.load_manifest', 'load_id'))),
                       %s, %s, %s, %s, %s, %s, %s, %s, %s, 'rejected', %s, %s::jsonb, now()) returning load_id""",
            (load_id, *key, path.name, size, sha, extract_date, encoding, result.rows_read, result.message,
             json.dumps(result.warnings)),
        ).fetchone()[0]  # fmt: skip


def duplicate_key_positions(entity: Entity) -> list[int]:
    """Positions, among a stored row's columns (``extra`` last), of those whose text decides a duplicate.

    The entity's key when it is a single text column (an id), else every column whose stored text is
    canonical: all but timestamps and numerics, whose different spellings can be equal in PostgreSQL.
    Rows with different text in these columns cannot be exact duplicates.
    """
    columns = [*entity.table_columns, Column("extra", "jsonb")]
    names = [c.name for c in columns]
    if len(entity.key) == 1 and entity.column(entity.key[0]).type == "text":
        return [names.index(entity.key[0])]
    return [i for i, c in enumerate(columns) if c.type not in {"timestamp", "numeric"}]


class _DuplicateGuard:
    """Proves in-stream, when it can, that a file has no exact duplicate rows, so the SQL pass can be skipped.

    Why: the duplicate pass sorts every row of the load on every column and costs the server about as
    much as the COPY. Rows are compared here on a hash of some of their columns, and distinct keys prove
    distinct rows: the entity's key when it is a single text column (an id), else every column whose
    stored text is canonical (all but timestamps and numerics, whose different spellings can be equal in
    PostgreSQL). A repeated hash (a real duplicate, an id used twice, two spellings of one instant, a
    collision) or more than ``limit`` rows sends the file through the SQL pass as before, so results never
    change. The hashes are kept as 8-byte integers: at most ``limit`` * 8 bytes, twice that while sorting.
    """

    def __init__(self, entity: Entity, limit: int = DUPLICATE_GUARD_LIMIT) -> None:
        self.positions = duplicate_key_positions(entity)
        self.limit = limit
        self.count = 0
        self.hashes: list[np.ndarray] | None = []

    def add(self, columns: Sequence[Sequence[str]], keep: Sequence[bool] | None = None) -> None:
        """Record the rows given as stored columns ('' for NULL); ``keep`` masks out bad rows."""
        if self.hashes is None:
            return
        if len(self.positions) == 1:
            keys: Iterable = columns[self.positions[0]]
        else:
            keys = zip(*(columns[i] for i in self.positions), strict=True)
        if keep is not None:
            keys = compress(keys, keep)
        self.add_hashes(np.fromiter(map(hash, keys), dtype=np.int64))

    def add_hashes(self, hashes: np.ndarray) -> None:
        """Record rows by the 8-byte hashes of their keys."""
        if self.hashes is None:
            return
        self.count += len(hashes)
        if self.count > self.limit:
            self.hashes = None
        else:
            self.hashes.append(hashes)

    def may_have_duplicates(self) -> bool:
        """False only when every row recorded has a distinct hash (call once, after the last row)."""
        if self.hashes is None:
            return True
        if not self.hashes:
            return False
        hashes = np.concatenate(self.hashes)
        self.hashes = []
        hashes.sort()
        return bool((hashes[1:] == hashes[:-1]).any())


class _BackgroundWriter(Writer):
    """Sends COPY data from a worker thread, so the next batch is parsed while the socket waits.

    psycopg's own ``QueuedLibpqWriter`` queues up to 1024 buffers; this queue holds ``depth`` batches,
    which keeps memory flat when the server is the slower side.
    """

    def __init__(self, cursor: psycopg.Cursor, depth: int = 4) -> None:
        self._inner = LibpqWriter(cursor)
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="copy-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._inner.write(data)
        except BaseException as err:  # handed to the main thread by write() or finish()
            self._error = err
            while self._queue.get() is not None:
                pass

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def finish(self, exc: BaseException | None = None) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._inner.finish(exc)


def _skip_fk_checks_during_copy(conn: psycopg.Connection, entity: Entity) -> str | None:
    """Skip PostgreSQL's per-row foreign-key check of ``load_id`` for the COPY, when the role may.

    Why: the check looks ``raw.load_manifest`` up once per row and costs more than the COPY itself, yet it
    cannot fail: every row carries the load_id inserted a moment earlier in this same transaction. It is
    skipped with ``session_replication_role = replica`` (superuser, or ``GRANT SET ON PARAMETER
    session_replication_role``) and only on a table with no triggers of its own, so nothing else is
    silenced. Returns the setting to restore after the COPY, or None when the checks stay on.
    """
    own_triggers = conn.execute(
        "select exists (select 1 from pg_trigger where tgrelid = %s::regclass and not tgisinternal)",
        (f"raw.{entity.name}",),
    ).fetchone()[0]
    if own_triggers:
        return None
    previous = conn.execute("select current_setting('session_replication_role')").fetchone()[0]
    try:
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return None
    return previous


class _RowSink:
    """Where a file's rows go: good rows to the COPY, bad rows to the quarantine spool, with the counts."""

    def __init__(self, plan: RowPlan, copy, spool, load_id: int, context: LoadContext, delimiter: str, result) -> None:
        self.plan = plan
        self.copy = copy
        self.quarantine = csv.writer(spool, lineterminator="\n")
        self.load_id = load_id
        self.constants = (str(load_id), context.source_system, context.location_id)
        self.fields = len(COPY_PREFIX) + len(plan.entity.table_columns) + 1
        self.delimiter = delimiter
        self.result = result
        self.guard = _DuplicateGuard(plan.entity)

    def add_batch(self, lines: Sequence[int], rows: list[list[str]]) -> None:
        """Load one batch: regular rows column-wise, ragged and blank rows one by one."""
        if not rows:
            return
        width = self.plan.width
        if width > 1 and all(map(width.__eq__, map(len, rows))):
            self._add_regular(lines, rows)
            return
        regular = [i for i, row in enumerate(rows) if width > 1 and len(row) == width]
        if regular:
            self._add_regular([lines[i] for i in regular], [rows[i] for i in regular])
        chosen = set(regular)
        self._add_irregular([(lines[i], row) for i, row in enumerate(rows) if i not in chosen])

    def _add_regular(self, lines: Sequence[int], rows: list[list[str]]) -> None:
        columns, bad = self.plan.apply_batch(rows)
        keep = None
        if bad:
            keep = [True] * len(rows)
            for i in bad:
                keep[i] = False
                self._quarantine(lines[i], rows[i], self.plan.apply(rows[i])[1])
        load_id, system, location = self.constants
        stored = zip(repeat(load_id), repeat(system), repeat(location), map(str, lines), *columns)
        if keep is not None:
            stored = compress(stored, keep)
        self.copy.write(_copy_text(stored, self.fields))
        self.guard.add(columns, keep)
        self.result.rows_read += len(rows)
        self.result.rows_loaded += len(rows) - len(bad)
        self.result.rows_quarantined += len(bad)

    def _add_irregular(self, numbered_rows: list[tuple[int, list[str]]]) -> None:
        """Rows of another width than the header's, or any row of a one-column file, through ``apply``."""
        stored: list[list[str]] = []
        for line, row in numbered_rows:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line: not a row
            self.result.rows_read += 1
            values, problems = self.plan.apply(row)
            if values is None:
                self._quarantine(line, row, problems)
                self.result.rows_quarantined += 1
                continue
            stored.append([*self.constants, str(line), *(v or "" for v in values)])
            self.result.rows_loaded += 1
        if stored:
            self.copy.write(_copy_text(stored, self.fields))
            self.guard.add(_unzip(stored, self.fields)[len(COPY_PREFIX) :])

    def _quarantine(self, line: int, row: list[str], problems: list[tuple[str, str]]) -> None:
        column = problems[0][0] or None
        reason = "; ".join(f"{c}: {r}" if c else r for c, r in problems)
        self.quarantine.writerow([self.load_id, line, column, reason, self.delimiter.join(row)])


@contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Pause Python's cycle collector while rows stream.

    Why: every row is a fresh list, so the collector runs every few hundred rows and, as batches come and
    go, repeatedly walks every object of the process (in an Airflow worker that is a lot); with it paused
    a load runs about a third faster. Rows hold only strings, so they form no cycles for it to find, and
    it is switched back on (if it was on) however the load ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _stream_rows(
    conn: psycopg.Connection,
    path: Path,
    mapping: FileMapping,
    context: LoadContext,
    entity: Entity,
    load_id: int,
    facts: Fingerprint,
    result: FileResult,
    progress: Callable[[int], None] | None,
    rows_source,
) -> bool:
    """COPY the file's good rows and quarantine the bad; True when the SQL duplicate pass is still needed.

    A UTF-8 delimited file goes column by column through Arrow (``reactivation.ingest.columnar``) when its
    rows and lines agree; otherwise, or when that path gives up part-way (its COPY is rolled back to a
    savepoint), row by row.
    """
    from reactivation.ingest import columnar

    args = (conn, path, mapping, context, entity, load_id, facts.encoding, result, progress)
    if rows_source is None and not facts.has_nul and columnar.applies(facts.encoding, mapping.delimiter):
        warnings = len(result.warnings)
        try:
            with conn.transaction():
                return _stream(*args, rows_source=None, lines=facts.lines)
        except columnar.NotColumnar:
            result.rows_read = result.rows_loaded = result.rows_quarantined = 0
            del result.warnings[warnings:]
    return _stream(*args, rows_source=rows_source, lines=None)


def _stream(
    conn: psycopg.Connection,
    path: Path,
    mapping: FileMapping,
    context: LoadContext,
    entity: Entity,
    load_id: int,
    encoding: str,
    result: FileResult,
    progress: Callable[[int], None] | None,
    *,
    rows_source,
    lines: int | None,
) -> bool:
    """One way of loading: column by column when ``lines`` (the file's line count) is given, else row by row."""
    from reactivation.ingest import columnar

    by_column = lines is not None
    with contextlib.ExitStack() as stack:
        if by_column:
            header = columnar.read_header(path, mapping.delimiter)
        elif rows_source is not None:
            header, pairs = rows_source()
            batches = _batches(pairs)
        else:
            text = stack.enter_context(_text_of(path, encoding, progress))
            header, batches = _without_header(_csv_batches(text, mapping.delimiter))
        if rows_source is None and (header is None or not any(cell.strip() for cell in header)):
            raise FileRejected("the file is empty (no header row); ask the source for a complete extract")
        if header and header[0].startswith("\ufeff"):
            header = [header[0].lstrip("\ufeff"), *header[1:]]  # a BOM under a declared encoding
        plan = RowPlan(entity, mapping, header, context)
        result.warnings.extend(plan.warnings)
        # Bad rows are spooled (to disk past 8 MB) and copied in after the data, keeping memory flat.
        spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024, mode="w+", newline=""))
        cur = stack.enter_context(conn.cursor())
        restore = _skip_fk_checks_during_copy(conn, entity)
        stack.enter_context(_garbage_collection_paused())
        if by_column:
            sink = columnar.ColumnarBatches(
                plan,
                result,
                csv.writer(spool, lineterminator="\n"),
                (str(load_id), context.source_system, context.location_id),
                mapping.delimiter,
            )
            with cur.copy(_copy_sql(entity), writer=_BackgroundWriter(cur)) as copy:
                columnar.stream(path, plan.width, mapping.delimiter, lines, sink, copy.write, progress)
        else:
            with cur.copy(_copy_sql(entity), writer=_BackgroundWriter(cur)) as copy:
                sink = _RowSink(plan, copy, spool, load_id, context, mapping.delimiter, result)
                for lines, rows in batches:
                    sink.add_batch(lines, rows)
        if restore is not None:
            conn.execute("select set_config('session_replication_role', %s, true)", (restore,))
        if result.rows_quarantined:
            spool.seek(0)
            with cur.copy(
                "copy raw.quarantine (load_id, source_line, column_name, reason, record) from stdin with (format csv)"
            ) as copy:
                while chunk := spool.read(1 << 20):
                    copy.write(chunk)
    if result.rows_read == 0:
        result.warnings.append("the file has a header but no rows")
    return sink.guard.may_have_duplicates()
