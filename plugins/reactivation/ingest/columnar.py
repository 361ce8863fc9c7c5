"""Column-at-a-time loading of delimited files with Apache Arrow: the loader's fast path.

Why: checking and normalising every cell in Python costs several times what PostgreSQL spends storing
the row. Arrow's CSV reader parses in C++, and its compute functions strip cells, check
canonical dates and timestamps and write the COPY input without a Python call per cell. Python still
decides every value that is not plain: codes, mapped values, dates in other formats and derived columns
go through the plan's memos one *distinct* value at a time, and a row with any problem goes through
``RowPlan.apply``, the reference, for its quarantine reasons. Stored rows, quarantine and counts are
the row reader's, value for value (``tests/test_ingest_columnar.py`` compares them).

The fast path needs each row on a line of its own, since a row's line number is its position: it
compares the rows Arrow read with the file's line count (``loader.fingerprint``) and, when they differ
(blank lines, a quoted line break, a ragged or unterminated row), raises ``NotColumnar`` at the end of the
file so that the caller rolls the file's COPY back and loads it with the row reader instead. So do a
declared encoding other than UTF-8, a one-column file, a NUL byte and a cell longer than
``csv.field_size_limit()``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from reactivation.ingest import normalise_arrow
from reactivation.ingest.loader import (
    _CANONICAL,
    COPY_PREFIX,
    FileResult,
    RowPlan,
    _CellMemo,
    _CompiledColumn,
    _DuplicateGuard,
    _email_and_validity,
    _phone_and_validity,
)

BLOCK_BYTES = 1 << 20  # bytes Arrow parses per batch
_UTF8 = {"utf-8", "utf-8-sig", "utf8"}
_ARROW_TYPES = {"date": pa.date32(), "timestamp": pa.timestamp("s")}


# The loader's derivations that have a whole-column version (``normalise_arrow``); the rest go value by value.
_ARROW_DERIVATIONS = {
    _phone_and_validity: lambda context, values: normalise_arrow.phones(values, context.phone_region),
    _email_and_validity: lambda context, values: normalise_arrow.emails(values),
}


class NotColumnar(Exception):
    """The file needs the row reader (see the module's docstring); nothing it sent may be kept."""


def applies(encoding: str, delimiter: str) -> bool:
    """True when the file may take the fast path (the rest is found while reading)."""
    return encoding.lower() in _UTF8 and len(delimiter) == 1 and delimiter not in '"\r\n'


# PostgreSQL's COPY text format: Arrow writes tab-separated values unquoted, nulls as empty fields (the COPY
# reads '' as NULL; the loader never stores an empty string); these characters need a backslash escape.
_TEXT_OPTIONS = pcsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
_TEXT_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"), ("\r", "\\r"), ('"', "\\x22"))


def copy_text(table: pa.Table) -> bytes:
    """COPY text-format lines for ``table``.

    Values rarely hold a backslash, tab, line break or double quote (which Arrow refuses to write unquoted),
    so the table is written as it is first; only when that fails or shows a backslash is every string column
    escaped and written again (a quote as ``\\x22``).
    """
    out = io.BytesIO()
    try:
        pcsv.write_csv(table, out, _TEXT_OPTIONS)
        if b"\\" not in out.getvalue():
            return out.getvalue()
    except pa.ArrowInvalid:
        pass
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type):
            for char, escape in _TEXT_ESCAPES:
                column = pc.replace_substring(column, char, escape)
        columns.append(column)
    out = io.BytesIO()
    pcsv.write_csv(pa.Table.from_arrays(columns, names=table.column_names), out, _TEXT_OPTIONS)
    return out.getvalue()


def _null_if_empty(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _constant(value: str | None, count: int) -> pa.Array:
    if value is None:
        return pa.nulls(count, pa.string())
    return pc.fill_null(pa.nulls(count, pa.string()), value)


def _mask(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False)


class ColumnarBatches:
    """Turns Arrow record batches of raw cells into the stored columns for COPY, quarantining bad rows."""

    def __init__(self, plan: RowPlan, result: FileResult, quarantine, constants: Sequence[str], delimiter: str) -> None:
        self.plan = plan
        self.result = result
        self.quarantine = quarantine  # a csv.writer
        self.constants = constants  # load_id, source_system, location_id
        self.delimiter = delimiter
        self.guard = _DuplicateGuard(plan.entity)
        self.limit = csv.field_size_limit()
        names = [c.name for c in plan.entity.table_columns]
        self.names = [*COPY_PREFIX, *names, "extra"]

    def stored(self, batch: pa.RecordBatch, first_line: int) -> pa.Table | None:
        """The batch's good rows as a table of the COPY's columns (None when none is good)."""
        count = batch.num_rows
        cells = batch.columns
        if any((pc.max(pc.binary_length(c)).as_py() or 0) > self.limit for c in cells):
            raise NotColumnar("a cell longer than the CSV field limit")
        bad = np.zeros(count, dtype=bool)
        columns: list[pa.Array] = []
        for col, memo in zip(self.plan.columns, self.plan._cell_memos, strict=True):
            values, problems = self._column(col, memo, cells[col.index] if col.index >= 0 else None, count)
            if problems is not None:
                bad |= problems
            columns.append(values)
        columns.extend(self._derived(columns))
        columns.append(self._extra(cells, count))
        lines = pa.array(np.arange(first_line, first_line + count, dtype=np.int64))
        if bad.any():
            self._quarantine(batch, np.flatnonzero(bad), first_line)
            keep = pa.array(~bad)
            columns = [pc.filter(c, keep) for c in columns]
            lines = pc.filter(lines, keep)
        good = count - int(bad.sum())
        self.result.rows_read += count
        self.result.rows_loaded += good
        self.result.rows_quarantined += count - good
        if not good:
            return None
        self._guard(columns)
        load_id, system, location = self.constants
        prefix = [_constant(load_id, good), _constant(system, good), _constant(location, good), lines]
        return pa.Table.from_arrays([*prefix, *columns], names=self.names)

    def _column(
        self, col: _CompiledColumn, memo: _CellMemo | None, cells: pa.Array | None, count: int
    ) -> tuple[pa.Array, np.ndarray | None]:
        """(stored values, True where the cell has a problem or None when none has) for one contract column."""
        if cells is None:  # no source column: a constant, a default or nothing
            value, problem = col.evaluate("")
            return _constant(value, count), (np.ones(count, dtype=bool) if problem is not None else None)
        if memo is None:  # plain text: the stripped cell
            values = pc.utf8_trim_whitespace(cells)
            empty = pc.equal(values, "")
            problems = _mask(empty) if col.required and pc.any(empty).as_py() else None
            return pc.if_else(empty, pa.scalar(None, pa.string()), values), problems
        if col.is_plain_date:
            return self._date_column(col, memo, cells)
        return self._by_distinct_value(memo, cells)

    def _date_column(
        self, col: _CompiledColumn, memo: _CellMemo, cells: pa.Array
    ) -> tuple[pa.Array, np.ndarray | None]:
        """Canonical dates and timestamps (the row reader's ``_CANONICAL``) pass a pattern and Arrow's calendar
        check and are kept as they are; the other cells (empty, other formats, impossible days) go to ``memo``."""
        pattern, check = _CANONICAL[col.type]
        values = pc.utf8_trim_whitespace(cells)
        canonical = pc.and_(
            pc.match_substring_regex(values, f"^(?:{pattern.pattern})$"),
            pc.invert(pc.starts_with(values, "0000")),  # Python has no year 0
        )
        keep = _mask(canonical)
        try:
            pc.cast(pc.filter(values, canonical), _ARROW_TYPES[col.type])
        except pa.ArrowInvalid:  # an impossible day or time among them: Python says which
            for i, value in zip(np.flatnonzero(keep).tolist(), pc.filter(values, canonical).to_pylist(), strict=True):
                try:
                    check(value)
                except ValueError:
                    keep[i] = False
        if keep.all():
            return values, None
        odd = np.flatnonzero(~keep)
        raw = cells.take(pa.array(odd)).to_pylist()
        stored = memo.map(raw)
        problems = None
        if bad := memo.bad_positions(raw):
            problems = np.zeros(len(cells), dtype=bool)
            problems[odd[bad]] = True
        values = pc.replace_with_mask(values, pa.array(~keep), pa.array(stored, pa.string()))
        return _null_if_empty(values), problems

    def _by_distinct_value(self, memo: _CellMemo, cells: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
        """Codes, mapped and parsed values: ``memo`` evaluates each distinct raw cell once."""
        encoded = cells.dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        stored = pa.array(memo.map(distinct), pa.string())
        problems = None
        if bad := memo.bad_positions(distinct):
            problems = np.isin(encoded.indices.to_numpy(), np.asarray(bad))
        return _null_if_empty(stored.take(encoded.indices)), problems

    def _derived(self, columns: list[pa.Array]) -> list[pa.Array]:
        names = self.plan.entity.column_names
        derived: list[pa.Array] = []
        for derivation in self.plan.derivations:
            source = pc.fill_null(columns[names.index(derivation.source)], "")
            vectorised = _ARROW_DERIVATIONS.get(derivation.make)
            if vectorised is not None:
                derived.extend(_null_if_empty(pc.fill_null(c, "")) for c in vectorised(self.plan.context, source))
                continue
            encoded = source.dictionary_encode()
            results = self.plan.derivation_memo(derivation).map(encoded.dictionary.to_pylist())
            for values in zip(*results, strict=True) if results else [()] * derivation.width:
                derived.append(_null_if_empty(pa.array([v or "" for v in values], pa.string()).take(encoded.indices)))
        return derived

    def _extra(self, cells: list[pa.Array], count: int) -> pa.Array:
        """Unmapped, non-empty cells as a JSON object per row (null when there are none)."""
        extra = self.plan.extra_columns
        if not extra:
            return pa.nulls(count, pa.string())
        present = np.zeros(count, dtype=bool)
        for i, _name in extra:
            present |= _mask(pc.not_equal(cells[i], ""))
        out: list[str | None] = [None] * count
        rows = np.flatnonzero(present)
        if len(rows):
            picked = pa.array(rows)
            lists = [cells[i].take(picked).to_pylist() for i, _name in extra]
            names = [name for _i, name in extra]
            for row, values in zip(rows.tolist(), zip(*lists, strict=True), strict=True):
                out[row] = json.dumps(
                    {name: value for name, value in zip(names, values, strict=True) if value != ""}, ensure_ascii=False
                )
        return pa.array(out, pa.string())

    def _quarantine(self, batch: pa.RecordBatch, rows: np.ndarray, first_line: int) -> None:
        picked = batch.take(pa.array(rows))
        lists = [column.to_pylist() for column in picked.columns]
        for row, cells in zip(rows.tolist(), zip(*lists, strict=True), strict=True):
            cells = list(cells)
            problems = self.plan.apply(cells)[1]
            column = problems[0][0] or None
            reason = "; ".join(f"{c}: {r}" if c else r for c, r in problems)
            self.quarantine.writerow([self.constants[0], first_line + row, column, reason, self.delimiter.join(cells)])

    def _guard(self, columns: list[pa.Array]) -> None:
        """Hash each stored row's key for the duplicate guard (``_DuplicateGuard``: 8 bytes a row)."""
        if self.guard.hashes is None:
            return
        keys = [pc.fill_null(columns[i], "") for i in self.guard.positions]
        joined = keys[0] if len(keys) == 1 else pc.binary_join_element_wise(*keys, "\x1f")
        self.guard.add_hashes(np.fromiter(map(hash, joined.to_numpy(zero_copy_only=False)), dtype=np.int64))


def read_header(path: Path, delimiter: str) -> list[str] | None:
    """The first row as the row reader sees it (BOM removed), or None for an empty file."""
    with path.open(encoding="utf-8-sig", newline="") as text:
        return next(csv.reader(text, delimiter=delimiter, strict=False), None)


def stream(
    path: Path,
    width: int,
    delimiter: str,
    lines: int,
    batches: ColumnarBatches,
    write: Callable[[bytes], None],
    progress: Callable[[int], None] | None,
) -> None:
    """Send the file's good rows to ``write`` as COPY text, batch by batch; raise NotColumnar when it cannot.

    ``lines``: the file's physical lines, which must be its rows and the header's one line.
    """
    if width < 2:
        raise NotColumnar("a one-column file")
    names = [f"c{i}" for i in range(width)]
    invalid: list[int] = []

    def on_invalid(row) -> str:
        invalid.append(1)
        return "skip"

    read_options = pcsv.ReadOptions(column_names=names, skip_rows=1, block_size=BLOCK_BYTES, use_threads=False)
    parse_options = pcsv.ParseOptions(
        delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=True, invalid_row_handler=on_invalid
    )
    convert_options = pcsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    # Arrow reads the file itself (into its own memory pool, bounded by its read-ahead), not through Python.
    with pa.OSFile(str(path), "r") as source:
        reported = 0
        try:
            reader = pcsv.open_csv(source, read_options, parse_options, convert_options)
            for batch in reader:
                if invalid:
                    raise NotColumnar("a row of another width than the header's")
                table = batches.stored(batch, first_line=2 + batches.result.rows_read)
                if table is not None:
                    write(copy_text(table))
                if progress is not None:
                    position = source.tell()
                    progress(position - reported)
                    reported = position
        except pa.ArrowInvalid as err:  # not UTF-8 after all, an unterminated quote, ...
            raise NotColumnar(str(err)) from err
        if invalid or batches.result.rows_read + 1 != lines:
            raise NotColumnar("rows and lines differ (blank lines or line breaks inside values)")
