"""Identifier formats and field rules shared by the sandbox's SendGrid and Twilio halves."""

from __future__ import annotations

import base64
import re
import secrets

EMAIL_ADDRESS = re.compile(
    r"^[^@\s\"<>,;()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
ALPHANUMERIC_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SHORT_CODE = re.compile(r"^\d{5,6}$")
MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")

# GSM 03.38: the basic set costs one septet, the extension set two; anything else makes the SMS UCS-2.
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def is_phone_number(value: str) -> bool:
    """E.164 (``+`` and up to 15 digits) with a length that is possible for the country, as Twilio checks."""
    import phonenumbers

    if not E164.match(value):
        return False
    try:
        return bool(phonenumbers.is_possible_number(phonenumbers.parse(value)))
    except phonenumbers.NumberParseException:
        return False


def sms_segments(body: str) -> int:
    """How many SMS segments Twilio bills ``body`` as (GSM-7: 160/153 septets, UCS-2: 70/67 units)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXTENDED for ch in body):
        septets = sum(2 if ch in _GSM_EXTENDED else 1 for ch in body)
        return 1 if septets <= 160 else -(-septets // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def _token(nbytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def new_x_message_id() -> str:
    """A mail send's X-Message-Id (22 URL-safe characters, like SendGrid's)."""
    return _token(16)


def new_sg_message_id(x_message_id: str, recipient_index: int) -> str:
    """A recipient's sg_message_id: starts with the request's X-Message-Id, as SendGrid's do."""
    return f"{x_message_id}.recvd-sandbox-{recipient_index}-0.0"


def new_sg_event_id() -> str:
    return _token(16)


def new_sms_sid() -> str:
    """A Message SID: "SM" and 32 hex digits."""
    return "SM" + secrets.token_hex(16)
