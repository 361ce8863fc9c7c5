"""The loader's fast phone rules give what the phonenumbers library gives."""

from __future__ import annotations

import random

import phonenumbers

from reactivation.ingest import normalise


def _library(value: str, region: str = "US") -> tuple[str | None, bool | None]:
    if not value:
        return None, None
    try:
        parsed = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None, False
    if not phonenumbers.is_valid_number(parsed):
        return None, False
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), True


def test_prefix_validity_matches_the_library_for_every_area_code() -> None:
    for area in range(200, 1000):
        for exchange in range(0, 1000, 37):
            prefix = f"{area}{exchange:03d}"
            number = phonenumbers.PhoneNumber(country_code=1, national_number=int(prefix.ljust(10, "0")))
            assert normalise._us_prefix_is_valid.__wrapped__(prefix) == phonenumbers.is_valid_number_for_region(
                number, "US"
            ), prefix


def test_phone_normalisation_matches_the_library() -> None:
    rng = random.Random(3)
    values = ["", "911", "+44 20 7946 0958", "+1 (800) 555-0100", "1-800-FLOWERS", "402 680 2498 x12"]
    for _ in range(4000):
        digits = "".join(rng.choice("0123456789") for _ in range(10))
        a, b, c = digits[:3], digits[3:6], digits[6:]
        values.append(rng.choice([f"{a}-{b}-{c}", f"({a}) {b}-{c}", f"{a}.{b}.{c}", digits, f"+1 {a} {b} {c}"]))
    for value in values:
        assert normalise.normalise_phone(value, "US") == _library(value), value
