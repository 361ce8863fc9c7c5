"""The SendGrid v3 subset the pipeline uses: Mail Send, Email Activity, and the signed-webhook key.

Validation follows SendGrid's Mail Send rules for the fields we send (personalizations 1..1000,
to/cc/bcc addresses, from, subject, content or template_id, asm.group_id, at most 10
categories, string custom_args, send_at within 72 hours) and answers with SendGrid's error shape
``{"errors": [{"message", "field", "help"}]}``. Unlike SendGrid, error messages never repeat an
address, so a client that logs them logs no personal data.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reactivation.sandbox.activity_query import QueryError, parse_query
from reactivation.sandbox.core import Sandbox, counted, drop_connection, guard, json_response
from reactivation.sandbox.formats import EMAIL_ADDRESS, new_sg_message_id, new_x_message_id
from reactivation.sandbox.state import EmailMessage, Fault, MailSendRequest, api_key_id

log = logging.getLogger("reactivation.sandbox")

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_CUSTOM_ARGS_BYTES = 10000
MAX_SEND_AT_AHEAD_SECONDS = 72 * 3600
MAX_ERRORS_REPORTED = 25
HELP_URL = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.{}"
DYNAMIC_TEMPLATE = re.compile(r"^d-[0-9a-fA-F]{32}$")
LEGACY_TEMPLATE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _error(message: str, field: str | None, anchor: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP_URL.format(anchor or field) if field else None}


def _errors(*errors: dict[str, Any]) -> dict[str, Any]:
    return {"errors": list(errors)}


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), "null"
    )


class _MailValidator:
    """Collects SendGrid-style errors for one Mail Send body."""

    def __init__(self, body: Any, now: float) -> None:
        self.body = body
        self.now = now
        self.errors: list[dict[str, Any]] = []

    def add(self, message: str, field: str | None, anchor: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append(_error(message, field, anchor))

    def run(self) -> list[dict[str, Any]]:
        body = self.body
        if not isinstance(body, dict):
            self.add(f"Invalid type. Expected: object, given: {_type_name(body)}.", None)
            return self.errors
        template_id = body.get("template_id")
        dynamic = isinstance(template_id, str) and bool(DYNAMIC_TEMPLATE.match(template_id))
        self.personalizations(body.get("personalizations"), dynamic)
        self.sender(body.get("from"))
        self.template_and_content(body, template_id)
        self.asm(body.get("asm"))
        self.categories(body.get("categories"))
        self.string_map(body.get("custom_args"), "custom_args")
        self.send_at(body.get("send_at"), "send_at")
        for name in ("mail_settings", "tracking_settings", "headers", "sections"):
            if name in body and not isinstance(body[name], dict):
                self.add(f"Invalid type. Expected: object, given: {_type_name(body[name])}.", name)
        return self.errors

    def personalizations(self, value: Any, dynamic: bool) -> None:
        if not isinstance(value, list) or not value:
            self.add("You must have at least one personalization.", "personalizations", "personalizations")
            return
        if len(value) > MAX_PERSONALIZATIONS:
            self.add(
                f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API request. "
                f"You have provided {len(value)} personalizations. "
                "Please consider splitting this into multiple requests and resending your request.",
                "personalizations",
                "personalizations",
            )
            return
        message_args = self.body.get("custom_args") if isinstance(self.body.get("custom_args"), dict) else {}
        recipients = 0
        for index, item in enumerate(value):
            where = f"personalizations.{index}"
            if not isinstance(item, dict):
                self.add(f"Invalid type. Expected: object, given: {_type_name(item)}.", where, "personalizations")
                continue
            recipients += self.recipients(item, where)
            if "subject" in item and (not isinstance(item["subject"], str) or not item["subject"]):
                self.add("The subject of a personalization must be a non-empty string.", f"{where}.subject")
            self.string_map(item.get("custom_args"), f"{where}.custom_args")
            self.string_map(item.get("substitutions"), f"{where}.substitutions")
            self.string_map(item.get("headers"), f"{where}.headers")
            if dynamic and item.get("substitutions"):
                self.add("Substitutions may not be used with dynamic templating", f"{where}.substitutions")
            data = item.get("dynamic_template_data")
            if data is not None and not isinstance(data, dict):
                self.add(
                    f"Invalid type. Expected: object, given: {_type_name(data)}.", f"{where}.dynamic_template_data"
                )
            self.send_at(item.get("send_at"), f"{where}.send_at")
            args = {**message_args, **(item.get("custom_args") if isinstance(item.get("custom_args"), dict) else {})}
            if len(json.dumps(args).encode()) > MAX_CUSTOM_ARGS_BYTES:
                self.add(
                    f"The custom_args of a personalization may total at most {MAX_CUSTOM_ARGS_BYTES} bytes.",
                    f"{where}.custom_args",
                )
        if recipients > MAX_RECIPIENTS:
            self.add(
                f"There is a limit of {MAX_RECIPIENTS} total recipients (to + cc + bcc) per request.",
                "personalizations",
                "personalizations",
            )

    def recipients(self, item: dict[str, Any], where: str) -> int:
        count = 0
        seen: set[str] = set()
        if not isinstance(item.get("to"), list) or not item["to"]:
            self.add("The to parameter is required for all personalization objects.", f"{where}.to")
        for kind in ("to", "cc", "bcc"):
            entries = item.get(kind)
            if entries is None:
                continue
            if not isinstance(entries, list):
                self.add(f"Invalid type. Expected: array, given: {_type_name(entries)}.", f"{where}.{kind}")
                continue
            for position, entry in enumerate(entries):
                address = entry.get("email") if isinstance(entry, dict) else None
                if not isinstance(address, str) or not EMAIL_ADDRESS.match(address):
                    self.add(
                        f"Each {kind} object must at least have an email address and may also contain a name.",
                        f"{where}.{kind}.{position}.email",
                        f"personalizations.{kind}",
                    )
                    continue
                if address.lower() in seen:
                    self.add(
                        "Each email address in the personalization block should be unique between to, cc, and bcc. "
                        f"An address appears more than once in {where}.",
                        where,
                        "personalizations",
                    )
                seen.add(address.lower())
                count += 1
        return count

    def sender(self, value: Any) -> None:
        if not isinstance(value, dict) or "email" not in value:
            self.add(
                "The from object must be provided for every email send. "
                "It is an object that requires the email parameter, but may also contain a name parameter.",
                "from",
            )
        elif not isinstance(value["email"], str) or not EMAIL_ADDRESS.match(value["email"]):
            self.add("The from email does not contain a valid address.", "from.email", "from")

    def template_and_content(self, body: dict[str, Any], template_id: Any) -> None:
        if template_id is not None and (
            not isinstance(template_id, str)
            or not (DYNAMIC_TEMPLATE.match(template_id) or LEGACY_TEMPLATE.match(template_id))
        ):
            self.add("The template_id must be a valid GUID (dynamic templates: d- and 32 hex digits).", "template_id")
        personalizations = body.get("personalizations") if isinstance(body.get("personalizations"), list) else []
        every_has_subject = bool(personalizations) and all(
            isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"] for p in personalizations
        )
        subject = body.get("subject")
        if subject is not None and not isinstance(subject, str):
            self.add(f"Invalid type. Expected: string, given: {_type_name(subject)}.", "subject")
        elif not subject and template_id is None and not every_has_subject:
            self.add(
                "The subject is required. You can get around this requirement if you use a template with a subject "
                "defined or if every personalization has a subject defined.",
                "subject",
            )
        content = body.get("content")
        if content is None or content == []:
            if template_id is None:
                self.add(
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block.",
                    "content",
                )
            return
        if not isinstance(content, list):
            self.add(f"Invalid type. Expected: array, given: {_type_name(content)}.", "content")
            return
        types = []
        for index, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            value = block.get("value") if isinstance(block, dict) else None
            if not isinstance(kind, str) or not kind or ";" in kind or "\r" in kind or "\n" in kind:
                self.add(
                    "The content type must be a MIME type without ';' or CRLF characters.", f"content.{index}.type"
                )
            if not isinstance(value, str) or not value:
                self.add(
                    "The content value must be a string at least one character in length.", f"content.{index}.value"
                )
            types.append(kind)
        if "text/plain" in types and types[0] != "text/plain":
            self.add(
                "If present, text/plain must be first, followed by text/html, followed by any other content.", "content"
            )

    def asm(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.add(f"Invalid type. Expected: object, given: {_type_name(value)}.", "asm")
            return
        group = value.get("group_id")
        if isinstance(group, bool) or not isinstance(group, int) or group < 1:
            self.add("The asm.group_id is required and must be an integer greater than 0.", "asm.group_id", "asm")
        display = value.get("groups_to_display")
        if display is not None and (
            not isinstance(display, list)
            or len(display) > 25
            or not all(isinstance(g, int) and not isinstance(g, bool) for g in display)
        ):
            self.add(
                "The asm.groups_to_display must be an array of at most 25 group ids.", "asm.groups_to_display", "asm"
            )

    def categories(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.add(f"Invalid type. Expected: array, given: {_type_name(value)}.", "categories")
            return
        if len(value) > MAX_CATEGORIES:
            self.add(
                f"Too many categories: a message may have at most {MAX_CATEGORIES} categories "
                f"(you provided {len(value)}).",
                "categories",
            )
        for index, category in enumerate(value):
            if not isinstance(category, str) or not category or len(category) > 255 or not category.isascii():
                self.add(
                    "A category must be a non-empty US-ASCII string of at most 255 characters.", f"categories.{index}"
                )

    def string_map(self, value: Any, where: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self.add(f"Invalid type. Expected: object, given: {_type_name(value)}.", where)
            return
        for key, item in value.items():
            if not isinstance(item, str):
                self.add(f"Invalid type. Expected: string, given: {_type_name(item)}.", f"{where}.{key}", where)
        if where == "custom_args" and len(json.dumps(value).encode()) > MAX_CUSTOM_ARGS_BYTES:
            self.add(f"The custom_args may total at most {MAX_CUSTOM_ARGS_BYTES} bytes.", where)

    def send_at(self, value: Any, where: str) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.add("The send_at parameter must be a unix timestamp (whole seconds).", where, "send_at")
        elif value > self.now + MAX_SEND_AT_AHEAD_SECONDS:
            self.add("The send_at parameter can't be more than 72 hours in the future.", where, "send_at")


def validate_mail(body: Any, now: float | None = None) -> list[dict[str, Any]]:
    """SendGrid's 400 errors for a Mail Send body; an empty list means the body would be accepted."""
    return _MailValidator(body, time.time() if now is None else now).run()


def build_messages(body: dict[str, Any], key: str, now: float) -> tuple[MailSendRequest, list[EmailMessage]]:
    """Split a valid Mail Send body into per-recipient messages, merging personalization overrides."""
    x_message_id = new_x_message_id()
    key_id = api_key_id(key)
    asm = body.get("asm") or {}
    mail_settings = body.get("mail_settings") or {}
    bypass = any(
        isinstance(mail_settings.get(name), dict) and mail_settings[name].get("enable") is True
        for name in ("bypass_list_management", "bypass_unsubscribe_management")
    )
    categories = list(dict.fromkeys(body.get("categories") or []))
    messages: list[EmailMessage] = []
    for index, personalization in enumerate(body["personalizations"]):
        custom_args = {**(body.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
        for kind in ("to", "cc", "bcc"):
            for entry in personalization.get(kind) or []:
                messages.append(
                    EmailMessage(
                        msg_id=new_sg_message_id(x_message_id, len(messages)),
                        x_message_id=x_message_id,
                        personalization_index=index,
                        to_email=entry["email"],
                        from_email=(personalization.get("from") or body["from"])["email"],
                        subject=personalization.get("subject") or body.get("subject"),
                        template_id=body.get("template_id"),
                        asm_group_id=asm.get("group_id"),
                        categories=categories,
                        custom_args=dict(custom_args),
                        send_at=personalization.get("send_at", body.get("send_at")),
                        bypass_list_management=bypass,
                        api_key_id=key_id,
                        created_at=now,
                        last_event_time=now,
                    )
                )
    request = MailSendRequest(
        x_message_id=x_message_id,
        accepted_at=now,
        personalizations=len(body["personalizations"]),
        msg_ids=[m.msg_id for m in messages],
        api_key_id=key_id,
        send_at=max((m.send_at for m in messages if m.send_at is not None), default=None),
    )
    return request, messages


def _fault_response(fault: Fault) -> Response:
    retry = {"Retry-After": str(fault.retry_after)}
    if fault.mode == "429":
        headers = {
            **retry,
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + fault.retry_after),
        }
        return json_response(_errors(_error("too many requests", None)), 429, headers)
    if fault.mode == "503":
        return json_response(_errors(_error("service unavailable", None)), 503, retry)
    return json_response(_errors(_error("internal server error", None)), 500)


def routes(sandbox: Sandbox) -> list[Route]:
    """The SendGrid endpoints, bound to one sandbox."""
    state = sandbox.state

    def authenticate(request: Request) -> str | Response:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if not header:
            return json_response(_errors(_error("authorization required", None)), 401)
        if scheme.lower() != "bearer" or not state.sendgrid_key_allowed(key.strip()):
            message = "The provided authorization grant is invalid, expired, or revoked"
            return json_response(_errors(_error(message, None)), 401)
        return key.strip()

    before = guard(sandbox, "sendgrid", authenticate, _fault_response)

    async def mail_send(request: Request) -> Response:
        key = await before(request, "sendgrid.mail_send", "send")
        if isinstance(key, Response):
            return key
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return json_response(_errors(_error("Bad Request", None)), 400)
        now = time.time()
        errors = validate_mail(body, now)
        if errors:
            log.info("sendgrid mail send rejected: %d validation error(s)", len(errors))
            return json_response(_errors(*errors), 400)
        sandbox_mode = (body.get("mail_settings") or {}).get("sandbox_mode") or {}
        if sandbox_mode.get("enable") is True:
            return Response(status_code=200)
        mail_request, messages = build_messages(body, key, now)
        state.add_mail(mail_request, messages)
        log.info(
            "sendgrid mail send accepted x_message_id=%s personalizations=%d recipients=%d",
            mail_request.x_message_id,
            mail_request.personalizations,
            len(messages),
        )
        sandbox.events.mail_accepted(mail_request)
        if state.take_fault("sendgrid", "send", "accept") is not None:
            log.info("sandbox fault accept_then_drop applied to sendgrid.mail_send (%s)", mail_request.x_message_id)
            return await drop_connection(sandbox, request)
        return Response(status_code=202, headers={"X-Message-Id": mail_request.x_message_id})

    async def messages_list(request: Request) -> Response:
        early = await before(request, "sendgrid.messages_list", "lookup")
        if isinstance(early, Response):
            return early
        raw_limit = request.query_params.get("limit", "10")
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            return json_response(_errors(_error("limit must be an integer between 1 and 1000", "limit")), 400)
        try:
            predicate = parse_query(request.query_params.get("query"))
        except QueryError as err:
            return json_response(_errors(_error(f"invalid query: {err}", "query")), 400)
        return json_response({"messages": state.query_emails(predicate, limit)}, 200)

    async def message_detail(request: Request) -> Response:
        early = await before(request, "sendgrid.message_get", "lookup")
        if isinstance(early, Response):
            return early
        detail = state.email_detail(request.path_params["msg_id"])
        if detail is None:
            return json_response(_errors(_error("Not Found", None)), 404)
        return json_response(detail, 200)

    async def signed_webhook_settings(request: Request) -> Response:
        denied = authenticate(request)
        if isinstance(denied, Response):
            return denied
        return json_response({"enabled": True, "public_key": sandbox.signer.public_key_base64()}, 200)

    return [
        Route("/v3/mail/send", counted(sandbox, "sendgrid.mail_send", mail_send), methods=["POST"]),
        Route("/v3/messages", counted(sandbox, "sendgrid.messages_list", messages_list), methods=["GET"]),
        Route("/v3/messages/{msg_id}", counted(sandbox, "sendgrid.message_get", message_detail), methods=["GET"]),
        Route(
            "/v3/user/webhooks/event/settings/signed",
            counted(sandbox, "sendgrid.signed_webhook_settings", signed_webhook_settings),
            methods=["GET"],
        ),
    ]
