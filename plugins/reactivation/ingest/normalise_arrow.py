"""``normalise``'s phone and email rules over whole Arrow columns, for the loader's columnar path.

Why: every patient has their own phone number and email address, so a memo of the Python functions
saves nothing and they cost about 8 µs a patient. Here Arrow's regular expressions (RE2) take the usual
spellings: US numbers matching ``normalise._PLAIN_US_NUMBER`` are judged by their area code and exchange
(one Python call per distinct prefix, as ``normalise._plain_us_number_is_valid`` does) and emails
matching ``normalise._EMAIL`` get their domain lower-cased. Anything else (other spellings, foreign
numbers, invalid emails, prefixes whose validity needs the whole number) goes through the Python function
itself, one distinct value at a time, so results are the same value for value.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reactivation.ingest import normalise


def _named_groups(pattern: str) -> str:
    """``pattern`` with its capturing groups named g1, g2, ... (Arrow's extract_regex wants names)."""
    out, n, escaped = [], 0, False
    for i, char in enumerate(pattern):
        if char == "(" and not escaped and not pattern.startswith("(?", i):
            n += 1
            out.append(f"(?P<g{n}>")
        else:
            out.append(char)
        escaped = char == "\\" and not escaped
    return "".join(out)


_PHONE = f"^(?:{_named_groups(normalise._PLAIN_US_NUMBER.pattern)})$"  # area code in g1 or g2, then g3, g4
_EMAIL = "^(?P<local>[^@]+)@(?P<domain>[^@]+)$"


def _flag(valid: bool | None) -> str | None:
    return None if valid is None else str(valid).lower()


def _by_python(
    values: pa.Array, todo: np.ndarray, func: Callable[[str], tuple], outputs: list[pa.Array]
) -> list[pa.Array]:
    """``outputs`` with the positions in ``todo`` replaced by ``func`` of each value (one call per distinct)."""
    if not todo.any():
        return outputs
    picked = values.filter(pa.array(todo)).dictionary_encode()
    results = [func(v) for v in picked.dictionary.to_pylist()]
    mask = pa.array(todo)
    replaced = []
    for k, column in enumerate(outputs):
        fresh = pa.array([r[k] for r in results], pa.string()).take(picked.indices)
        replaced.append(pc.replace_with_mask(column, mask, fresh))
    return replaced


def phones(values: pa.Array, region: str) -> list[pa.Array]:
    """(E.164 or null, 'true' / 'false' / null) per stored phone ('' for none), as ``normalise_phone``."""

    def python(value: str) -> tuple:
        e164, valid = normalise.normalise_phone(value, region)
        return e164, _flag(valid)

    count = len(values)
    e164 = pa.nulls(count, pa.string())
    valid = pa.nulls(count, pa.string())
    todo = pc.not_equal(values, "").to_numpy(zero_copy_only=False)
    if region == "US" and normalise._US_PREFIX is not None and todo.any():
        parts = pc.extract_regex(values, _PHONE)  # null where the spelling is not a plain US one
        plain = pc.is_valid(parts).to_numpy(zero_copy_only=False)
        if plain.any():
            area = pc.if_else(
                pc.equal(pc.struct_field(parts, [0]), ""), pc.struct_field(parts, [1]), pc.struct_field(parts, [0])
            )
            digits = pc.binary_join_element_wise(area, pc.struct_field(parts, [2]), pc.struct_field(parts, [3]), "")
            prefixes = pc.utf8_slice_codeunits(digits, 0, normalise._US_PREFIX).dictionary_encode()
            good = [normalise._us_prefix_is_valid(p) for p in prefixes.dictionary.to_pylist()]
            by_prefix = pc.fill_null(pa.array(good, pa.bool_()).take(prefixes.indices), False)
            sure = plain & by_prefix.to_numpy(zero_copy_only=False)
            mask = pa.array(sure)
            e164 = pc.if_else(mask, pc.binary_join_element_wise("+1", digits, ""), e164)
            valid = pc.if_else(mask, pa.scalar("true"), valid)
            todo = todo & ~sure
    return _by_python(values, todo, python, [e164, valid])


def emails(values: pa.Array) -> list[pa.Array]:
    """(normalised or null, 'true' / 'false' / null) per stored email ('' for none), as ``normalise_email``."""

    def python(value: str) -> tuple:
        normalised, valid = normalise.normalise_email(value)
        return normalised, _flag(valid)

    count = len(values)
    out = pa.nulls(count, pa.string())
    valid = pa.nulls(count, pa.string())
    todo = pc.not_equal(values, "").to_numpy(zero_copy_only=False)
    if todo.any():
        good = pc.and_(
            pc.match_substring_regex(values, normalise._EMAIL.pattern),
            pc.invert(pc.match_substring(values, "..")),
        )
        good = pc.and_(good, pc.equal(pc.utf8_trim_whitespace(values), values))  # normalise strips first
        sure = pc.fill_null(good, False).to_numpy(zero_copy_only=False) & todo
        if sure.any():
            parts = pc.extract_regex(values, _EMAIL)
            domain = pc.ascii_lower(pc.struct_field(parts, [1]))  # the pattern allows ASCII domains only
            mask = pa.array(sure)
            out = pc.if_else(mask, pc.binary_join_element_wise(pc.struct_field(parts, [0]), domain, "@"), out)
            valid = pc.if_else(mask, pa.scalar("true"), valid)
            todo = todo & ~sure
    return _by_python(values, todo, python, [out, valid])
