"""Value parsing and normalisation shared by every adapter.

Each parser returns the value to store or raises ``ValueError`` with a short,
PHI-free reason; the loader turns that into a quarantine row.
"""

from __future__ import annotations

import functools
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers

DEFAULT_DATE_FORMATS = ("%m/%d/%Y", "%m/%d/%y", "%Y%m%d", "%d-%b-%Y", "%d %b %Y", "%Y/%m/%d", "%m-%d-%Y")
DEFAULT_TIMESTAMP_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %I:%M %p", "%Y%m%d%H%M%S")

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}

# Pragmatic syntax check (RFC 5322 is looser; this is what messaging providers accept).
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)


def parse_date(value: str, formats: tuple[str, ...] = DEFAULT_DATE_FORMATS) -> str:
    """Return an ISO date string. Accepts ISO dates and timestamps, then each format in turn."""
    if len(value) >= 10 and value[4] == "-" and value[7] == "-":
        try:
            return date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            raise ValueError("not a valid date") from None
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError("unrecognised date format")


def parse_timestamp(
    value: str,
    formats: tuple[str, ...] = DEFAULT_TIMESTAMP_FORMATS,
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS,
) -> str:
    """Return an ISO timestamp (with offset when the source gave one; naive ones take the load's time zone)."""
    if len(value) >= 10 and value[4] == "-" and value[7] == "-":
        try:
            return datetime.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("not a valid timestamp") from None
    for fmt in formats:
        try:
            return datetime.strptime(value, fmt).isoformat()
        except ValueError:
            continue
    try:
        return parse_date(value, date_formats) + "T00:00:00"
    except ValueError:
        raise ValueError("unrecognised timestamp format") from None


def parse_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone (e.g. America/Chicago)") from None
    return value


def parse_boolean(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    raise ValueError("not a boolean (expected true/false, yes/no, 1/0)")


def parse_numeric(value: str) -> str:
    try:
        number = Decimal(value.replace(",", "") if "," in value else value)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return str(number)


# A US number in one of the usual spellings: 402-680-2498, (402) 680-2498, 402.680.2498, 4026802498,
# +1 402 680 2498. For these, phonenumbers.parse(value, "US") gives country code 1 and the ten digits as
# the national number (the area code cannot start with 0 or 1, so there is no national prefix to strip),
# and the E.164 form is "+1" and the ten digits.
_PLAIN_US_NUMBER = re.compile(
    r"(?:\+1[ .-]?)?(?:\(([2-9][0-9]{2})\) ?|([2-9][0-9]{2})[ .-]?)([0-9]{3})[ .-]?([0-9]{4})"
)
# is_valid_number tries the regions sharing country code 1 in this order; with US first, a number valid
# for the US is valid, and only the others need the full check.
_US_FIRST = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(1, ())[:1] == ("US",)
_US_DESCS = ("general_desc", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
             "uan", "voicemail", "fixed_line", "mobile")  # fmt: skip
_TRAILING_DIGITS = re.compile(r"\\d\{([0-9]+)\}$")


def _digits_deciding_validity(metadata) -> int | None:
    r"""How many leading digits of a ten-digit US number decide its validity (None: all of them).

    Every US number pattern is a choice of alternatives ending in \d{k}; a ten-digit number matches an
    alternative A\d{k} exactly when its first 10 - k digits match A. So when every alternative ends in
    \d{k} with k >= 1, the first 10 - (smallest k) digits decide (six today: area code and exchange).
    """
    smallest = 10
    for name in _US_DESCS:
        desc = getattr(metadata, name, None)
        pattern = None if desc is None else desc.national_number_pattern
        if not pattern:
            continue
        for alternative in _top_level_alternatives(pattern):
            match = _TRAILING_DIGITS.search(alternative)
            if match is None or int(match[1]) < 1:
                return None
            smallest = min(smallest, int(match[1]))
    return 10 - smallest


def _top_level_alternatives(pattern: str) -> list[str]:
    """The pattern split at the | signs outside any group or character class."""
    parts, depth, start, in_class, escaped = [], 0, 0, False, False
    for i, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
    parts.append(pattern[start:])
    return parts


_US_METADATA = phonenumbers.PhoneMetadata.metadata_for_region("US")
_US_PREFIX = _digits_deciding_validity(_US_METADATA) if _US_FIRST and _US_METADATA is not None else None


def normalise_phone(value: str | None, region: str = "US") -> tuple[str | None, bool | None]:
    """(E.164 form, is valid). Only valid numbers get an E.164 form; the rest are flagged invalid."""
    if not value:
        return None, None
    digits = _plain_us_digits(value) if region == "US" else None
    if digits is not None:
        return ("+1" + digits, True) if _plain_us_number_is_valid(digits) else (None, False)
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, False
    if not phonenumbers.is_valid_number(parsed):
        return None, False
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), True


def _plain_us_digits(value: str) -> str | None:
    """The ten digits of a US number in a usual spelling (see _PLAIN_US_NUMBER), else None ("use parse").

    Why: phonenumbers.parse is the costliest step of loading a patient (about 15 µs).
    """
    match = _PLAIN_US_NUMBER.fullmatch(value)
    if match is None:
        return None
    return (match[1] or match[2]) + match[3] + match[4]


def _plain_us_number_is_valid(digits: str) -> bool:
    """phonenumbers.is_valid_number for +1 and these ten digits, answered from the leading digits when exact.

    Why: the check runs a dozen long patterns (about 10 µs a number) and every patient has their own
    number, but numbers sharing an area code and exchange share the answer (see _digits_deciding_validity).
    """
    if _US_PREFIX is not None and _us_prefix_is_valid(digits[:_US_PREFIX]):
        return True
    return phonenumbers.is_valid_number(phonenumbers.PhoneNumber(country_code=1, national_number=int(digits)))


def _compiled_desc(desc) -> tuple[tuple[int, ...], re.Pattern] | None:
    if desc is None or not desc.national_number_pattern:
        return None
    return tuple(desc.possible_length), re.compile(desc.national_number_pattern)


# phonenumbers' _number_type_helper for the US, with its patterns compiled once: a number is valid for the
# region when it matches the general description and then one of the types (mobile only where its pattern
# differs from fixed line's). Matching a description: its possible lengths (when listed), then its pattern.
_US_GENERAL = _compiled_desc(_US_METADATA.general_desc) if _US_METADATA is not None else None
_US_TYPES = [
    compiled
    for name in _US_DESCS[1:]
    if not (name == "mobile" and _US_METADATA.same_mobile_and_fixed_line_pattern)
    if (compiled := _compiled_desc(getattr(_US_METADATA, name, None))) is not None
] if _US_METADATA is not None else []  # fmt: skip


def _matches(national_number: str, compiled: tuple[tuple[int, ...], re.Pattern] | None) -> bool:
    if compiled is None:
        return False
    lengths, pattern = compiled
    return (not lengths or len(national_number) in lengths) and pattern.fullmatch(national_number) is not None


@functools.lru_cache(maxsize=1 << 14)
def _us_prefix_is_valid(prefix: str) -> bool:
    """is_valid_number_for_region(+1 prefix, padded with zeros to ten digits, "US"), about 10x faster."""
    national_number = str(int(prefix.ljust(10, "0")))
    return _matches(national_number, _US_GENERAL) and any(_matches(national_number, t) for t in _US_TYPES)


def normalise_email(value: str | None) -> tuple[str | None, bool | None]:
    if not value:
        return None, None
    cleaned = value.strip()
    if not _EMAIL.match(cleaned) or ".." in cleaned:
        return cleaned.lower(), False
    local, _, domain = cleaned.rpartition("@")
    return f"{local}@{domain.lower()}", True


# IANA zone per US state (the zone most of the state's population lives in).
STATE_TIMEZONES = {
    "AL": "America/Chicago", "AK": "America/Anchorage", "AZ": "America/Phoenix", "AR": "America/Chicago",
    "CA": "America/Los_Angeles", "CO": "America/Denver", "CT": "America/New_York", "DE": "America/New_York",
    "DC": "America/New_York", "FL": "America/New_York", "GA": "America/New_York", "HI": "Pacific/Honolulu",
    "ID": "America/Boise", "IL": "America/Chicago", "IN": "America/Indiana/Indianapolis", "IA": "America/Chicago",
    "KS": "America/Chicago", "KY": "America/New_York", "LA": "America/Chicago", "ME": "America/New_York",
    "MD": "America/New_York", "MA": "America/New_York", "MI": "America/Detroit", "MN": "America/Chicago",
    "MS": "America/Chicago", "MO": "America/Chicago", "MT": "America/Denver", "NE": "America/Chicago",
    "NV": "America/Los_Angeles", "NH": "America/New_York", "NJ": "America/New_York", "NM": "America/Denver",
    "NY": "America/New_York", "NC": "America/New_York", "ND": "America/Chicago", "OH": "America/New_York",
    "OK": "America/Chicago", "OR": "America/Los_Angeles", "PA": "America/New_York", "RI": "America/New_York",
    "SC": "America/New_York", "SD": "America/Chicago", "TN": "America/Chicago", "TX": "America/Chicago",
    "UT": "America/Denver", "VT": "America/New_York", "VA": "America/New_York", "WA": "America/Los_Angeles",
    "WV": "America/New_York", "WI": "America/Chicago", "WY": "America/Denver", "PR": "America/Puerto_Rico",
}  # fmt: skip


STATE_CODES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA", "colorado": "CO",
    "connecticut": "CT", "delaware": "DE", "district of columbia": "DC", "florida": "FL", "georgia": "GA",
    "hawaii": "HI", "idaho": "ID", "illinois": "IL", "indiana": "IN", "iowa": "IA", "kansas": "KS",
    "kentucky": "KY", "louisiana": "LA", "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI",
    "minnesota": "MN", "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY", "north carolina": "NC",
    "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR", "pennsylvania": "PA",
    "rhode island": "RI", "south carolina": "SC", "south dakota": "SD", "tennessee": "TN", "texas": "TX",
    "utah": "UT", "vermont": "VT", "virginia": "VA", "washington": "WA", "west virginia": "WV",
    "wisconsin": "WI", "wyoming": "WY", "puerto rico": "PR",
}  # fmt: skip


def timezone_for_state(state: str | None) -> str | None:
    """IANA zone for a US state given as a two-letter code or a full name."""
    if not state:
        return None
    cleaned = " ".join(state.strip().split())
    code = cleaned.upper() if len(cleaned) == 2 else STATE_CODES.get(cleaned.lower())
    return STATE_TIMEZONES.get(code) if code else None
