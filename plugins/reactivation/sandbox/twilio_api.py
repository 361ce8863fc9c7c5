"""The Twilio Programmable Messaging subset the pipeline uses: create, fetch and list Messages.

Requests authenticate with HTTP Basic (account SID, auth token). Errors use Twilio's JSON shape
``{"code", "message", "more_info", "status"}`` with Twilio's codes (21211 invalid To, 21617 body
too long, 21610 recipient replied STOP, ...). Twilio's documented test numbers behave as with test
credentials: To +15005550001 → 21211, +15005550002 → 21612, +15005550003 → 21408,
+15005550004 → 21610, +15005550009 → 21614. Error messages never repeat a phone number.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reactivation.sandbox.core import Sandbox, counted, drop_connection, guard, json_response
from reactivation.sandbox.formats import (
    ALPHANUMERIC_SENDER,
    MESSAGING_SERVICE_SID,
    SHORT_CODE,
    is_phone_number,
    new_sms_sid,
    sms_segments,
)
from reactivation.sandbox.state import TWILIO_API_VERSION, Fault, SmsMessage

log = logging.getLogger("reactivation.sandbox")

MAX_BODY_CHARACTERS = 1600
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

# Twilio's magic test numbers (documented for test credentials).
MAGIC_TO_NUMBERS = {
    "+15005550001": (21211, "Invalid 'To' Phone Number"),
    "+15005550002": (21612, "The 'To' phone number is not currently reachable via SMS"),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number is not a valid mobile number"),
}
MAGIC_FROM_NUMBERS = {"+15005550001": (21212, "Invalid From Number (caller ID)")}


def twilio_error(code: int, message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    payload = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(payload, status, headers)


def _fault_response(fault: Fault) -> Response:
    retry = {"Retry-After": str(fault.retry_after)}
    if fault.mode == "429":
        return twilio_error(20429, "Too Many Requests", 429, retry)
    if fault.mode == "503":
        return twilio_error(20503, "Service Unavailable", 503, retry)
    return twilio_error(20500, "Internal Server Error", 500)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validate_create(params: dict[str, str]) -> tuple[int, str] | None:
    """Twilio's first complaint about a Message create request, as (code, message), or None if valid."""
    to = params.get("To")
    sender = params.get("From")
    service = params.get("MessagingServiceSid")
    body = params.get("Body")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not is_phone_number(to):
        return 21211, "Invalid 'To' Phone Number"
    if not sender and not service:
        return 21603, "A 'From' phone number or a 'MessagingServiceSid' is required."
    if sender and not (is_phone_number(sender) or ALPHANUMERIC_SENDER.match(sender) or SHORT_CODE.match(sender)):
        return 21212, "Invalid From Number (caller ID)"
    if service and not MESSAGING_SERVICE_SID.match(service):
        return 21701, "The Messaging Service Sid is invalid."
    if not body and not params.get("MediaUrl") and not params.get("ContentSid"):
        return 21602, "Message body is required."
    if body and len(body) > MAX_BODY_CHARACTERS:
        return 21617, f"The concatenated message body exceeds the {MAX_BODY_CHARACTERS} character limit."
    if sender and sender == to:
        return 21266, "'To' and 'From' number cannot be the same"
    callback = params.get("StatusCallback")
    if callback and not _is_http_url(callback):
        return 21609, "Invalid StatusCallback"
    if sender in MAGIC_FROM_NUMBERS:
        return MAGIC_FROM_NUMBERS[sender]
    if to in MAGIC_TO_NUMBERS:
        return MAGIC_TO_NUMBERS[to]
    return None


def _date_filter(value: str) -> tuple[date | datetime, bool]:
    """Parse a DateSent filter value: (a date or an aware datetime, whether it is a whole day)."""
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text), True
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("DateSent must be YYYY-MM-DD or an ISO 8601 UTC time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), False


def _list_predicate(query: dict[str, str]) -> Callable[[SmsMessage], bool]:
    checks: list[Callable[[SmsMessage], bool]] = []
    if query.get("To"):
        to = query["To"]
        checks.append(lambda m: m.to == to)
    if query.get("From"):
        sender = query["From"]
        checks.append(lambda m: m.from_ == sender)
    for key, compare in (
        ("DateSent", lambda a, b: a == b),
        ("DateSent<", lambda a, b: a <= b),
        ("DateSent>", lambda a, b: a >= b),
    ):
        if not query.get(key):
            continue
        bound, whole_day = _date_filter(query[key])
        if key == "DateSent" and not whole_day:
            bound, whole_day = bound.date() if isinstance(bound, datetime) else bound, True

        def check(m: SmsMessage, bound: Any = bound, whole_day: bool = whole_day, compare: Any = compare) -> bool:
            if m.date_sent is None:
                return False
            sent = datetime.fromtimestamp(m.date_sent, UTC)
            return bool(compare(sent.date(), bound) if whole_day else compare(sent, bound))

        checks.append(check)
    return lambda m: all(check(m) for check in checks)


def routes(sandbox: Sandbox) -> list[Route]:
    """The Twilio Messages endpoints, bound to one sandbox."""
    state = sandbox.state
    prefix = f"/{TWILIO_API_VERSION}/Accounts/{{account_sid}}"

    def authenticate(request: Request) -> str | Response:
        account_sid = request.path_params["account_sid"]
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        username = token = ""
        if scheme.lower() == "basic":
            try:
                username, _, token = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                username = token = ""
        if not state.twilio_credentials_allowed(username, token):
            return twilio_error(20003, "Authenticate", 401, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if username != account_sid:
            return twilio_error(20404, f"The requested resource {request.url.path} was not found", 404)
        return token

    before = guard(sandbox, "twilio", authenticate, _fault_response)

    async def create(request: Request) -> Response:
        token = await before(request, "twilio.messages_create", "send")
        if isinstance(token, Response):
            return token
        account_sid = request.path_params["account_sid"]
        try:
            params = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return twilio_error(20001, "The request body is not valid form data", 400)
        problem = validate_create(params)
        if problem is None and state.is_opted_out(account_sid, params["To"]):
            problem = (21610, "Attempt to send to unsubscribed recipient")
        if problem is not None:
            log.info("twilio message rejected: error %d", problem[0])
            return twilio_error(problem[0], problem[1], 400)
        now = time.time()
        service = params.get("MessagingServiceSid") or None
        body = params.get("Body", "")
        message = SmsMessage(
            sid=new_sms_sid(),
            account_sid=account_sid,
            to=params["To"],
            from_=params.get("From") or None,
            body=body,
            messaging_service_sid=service,
            status="accepted" if service and not params.get("From") else "queued",
            direction="outbound-api",
            date_created=now,
            date_updated=now,
            num_segments=sms_segments(body),
            status_callback=params.get("StatusCallback") or None,
            auth_token=token,
        )
        state.add_sms(message)
        log.info("twilio message created sid=%s segments=%d", message.sid, message.num_segments)
        resource = message.resource()
        sandbox.events.sms_created(message)
        if state.take_fault("twilio", "send", "accept") is not None:
            log.info("sandbox fault accept_then_drop applied to twilio.messages_create (%s)", message.sid)
            return await drop_connection(sandbox, request)
        return json_response(resource, 201)

    async def fetch(request: Request) -> Response:
        early = await before(request, "twilio.message_fetch", "lookup")
        if isinstance(early, Response):
            return early
        message = state.get_sms(request.path_params["account_sid"], request.path_params["sid"])
        if message is None:
            return twilio_error(20404, f"The requested resource {request.url.path} was not found", 404)
        with state.lock:
            resource = message.resource()
        return json_response(resource, 200)

    async def list_messages(request: Request) -> Response:
        early = await before(request, "twilio.messages_list", "lookup")
        if isinstance(early, Response):
            return early
        account_sid = request.path_params["account_sid"]
        query = dict(request.query_params)
        try:
            size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
        except ValueError:
            return twilio_error(20001, "PageSize and Page must be integers", 400)
        if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
            return twilio_error(20001, f"PageSize must be 1-{MAX_PAGE_SIZE} and Page at least 0", 400)
        try:
            predicate = _list_predicate(query)
        except ValueError as err:
            return twilio_error(20001, str(err), 400)
        matching = state.list_sms(account_sid, predicate)
        start = page * size
        with state.lock:
            records = [m.resource() for m in matching[start : start + size]]
        filters = {k: v for k, v in query.items() if k in ("To", "From", "DateSent", "DateSent<", "DateSent>")}
        base = f"/{TWILIO_API_VERSION}/Accounts/{account_sid}/Messages.json"

        def page_uri(number: int) -> str:
            return f"{base}?{urlencode({**filters, 'PageSize': size, 'Page': number})}"

        payload = {
            "end": start + max(len(records) - 1, 0),
            "first_page_uri": page_uri(0),
            "messages": records,
            "next_page_uri": page_uri(page + 1) if start + size < len(matching) else None,
            "page": page,
            "page_size": size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }
        return json_response(payload, 200)

    return [
        Route(f"{prefix}/Messages.json", counted(sandbox, "twilio.messages_create", create), methods=["POST"]),
        Route(f"{prefix}/Messages.json", counted(sandbox, "twilio.messages_list", list_messages), methods=["GET"]),
        Route(f"{prefix}/Messages/{{sid}}.json", counted(sandbox, "twilio.message_fetch", fetch), methods=["GET"]),
    ]
