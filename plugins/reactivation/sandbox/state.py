"""In-memory store of the provider sandbox: settings, accepted messages, pending faults and counters.

Everything lives behind one re-entrant lock because three kinds of threads touch it: the
ASGI event loop (API requests), the webhook dispatcher (delivery transitions and posts) and
in-process tests reading it directly. Compound updates take ``state.lock`` themselves.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

PROVIDERS = ("sendgrid", "twilio")
FAULT_PROVIDERS = (*PROVIDERS, "any")
FAULT_MODES = ("429", "500", "503", "hang", "accept_then_drop")
FAULT_ENDPOINTS = ("send", "lookup", "any")
HANG_THEN = ("drop", "accept")

TWILIO_API_VERSION = "2010-04-01"
SMS_TERMINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled", "received"})
EMAIL_FINAL_STATUSES = frozenset({"delivered", "not_delivered"})


class SandboxError(ValueError):
    """A control-API request the sandbox cannot apply; the message says what to change."""


def _http_url(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SandboxError(f"{name} must be a string URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SandboxError(f"{name} must be an http:// or https:// URL")
    return value


@dataclass(frozen=True)
class SandboxSettings:
    """What the sandbox does besides answering: where it posts webhooks, how fast messages deliver, whom it trusts.

    Empty credential sets mean "open": any non-empty API key / auth token is accepted, so the demo
    works without shared secrets; configured credentials make the sandbox answer 401 like the real APIs.
    """

    events_url: str | None = None
    twilio_status_callback_url: str | None = None
    twilio_inbound_url: str | None = None
    delivery_delay: float = 0.1
    webhook_timeout: float = 5.0
    webhook_retries: int = 2
    webhook_retry_backoff: float = 0.5
    webhook_copies: int = 1
    webhook_batch_size: int = 1000
    sendgrid_api_keys: frozenset[str] = frozenset()
    twilio_accounts: Mapping[str, str] = field(default_factory=dict)

    _URLS: ClassVar[tuple[str, ...]] = ("events_url", "twilio_status_callback_url", "twilio_inbound_url")
    _NUMBERS: ClassVar[dict[str, tuple[type, float, float]]] = {
        "delivery_delay": (float, 0.0, 3600.0),
        "webhook_timeout": (float, 0.1, 120.0),
        "webhook_retries": (int, 0, 20),
        "webhook_retry_backoff": (float, 0.0, 60.0),
        "webhook_copies": (int, 1, 10),
        "webhook_batch_size": (int, 1, 10000),
    }

    def updated(self, changes: Mapping[str, Any]) -> SandboxSettings:
        """A copy with ``changes`` applied; raises SandboxError naming the first bad key."""
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known or key.startswith("_"):
                raise SandboxError(f"unknown setting {key!r}; known: {', '.join(sorted(k for k in known))}")
            if key in self._URLS:
                values[key] = _http_url(value, key)
            elif key in self._NUMBERS:
                kind, low, high = self._NUMBERS[key]
                if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                    raise SandboxError(f"{key} must be a number between {low:g} and {high:g}")
                values[key] = kind(value)
            elif key == "sendgrid_api_keys":
                if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
                    raise SandboxError("sendgrid_api_keys must be a list of non-empty strings ([] = accept any key)")
                values[key] = frozenset(value)
            elif key == "twilio_accounts":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()
                ):
                    raise SandboxError("twilio_accounts must map account SID to auth token ({} = accept any)")
                values[key] = dict(value)
        return replace(self, **values)

    def public(self) -> dict[str, Any]:
        """The settings as JSON without secrets: credentials are reported as counts and account SIDs."""
        return {
            "events_url": self.events_url,
            "twilio_status_callback_url": self.twilio_status_callback_url,
            "twilio_inbound_url": self.twilio_inbound_url,
            "delivery_delay": self.delivery_delay,
            "webhook_timeout": self.webhook_timeout,
            "webhook_retries": self.webhook_retries,
            "webhook_retry_backoff": self.webhook_retry_backoff,
            "webhook_copies": self.webhook_copies,
            "webhook_batch_size": self.webhook_batch_size,
            "sendgrid_api_keys": len(self.sendgrid_api_keys),
            "twilio_accounts": sorted(self.twilio_accounts),
        }


@dataclass
class Fault:
    """A failure to inject into the next ``remaining`` matching provider requests."""

    id: int
    provider: str
    mode: str
    remaining: int
    endpoint: str = "send"
    retry_after: int = 1
    hang_seconds: float = 30.0
    then: str = "drop"
    applied: int = 0

    @classmethod
    def from_spec(cls, fault_id: int, spec: Mapping[str, Any]) -> Fault:
        """Validate a control-API fault request."""
        allowed = {"provider", "mode", "count", "endpoint", "retry_after", "hang_seconds", "then"}
        unknown = set(spec) - allowed
        if unknown:
            raise SandboxError(f"unknown fault keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        provider = spec.get("provider", "any")
        mode = str(spec.get("mode", ""))
        endpoint = spec.get("endpoint", "send")
        if provider not in FAULT_PROVIDERS:
            raise SandboxError(f"provider must be one of {FAULT_PROVIDERS}")
        if mode not in FAULT_MODES:
            raise SandboxError(f"mode must be one of {FAULT_MODES}")
        if endpoint not in FAULT_ENDPOINTS:
            raise SandboxError(f"endpoint must be one of {FAULT_ENDPOINTS}")
        if mode == "accept_then_drop" and endpoint == "lookup":
            raise SandboxError("accept_then_drop only applies to sends (endpoint 'send' or 'any')")
        count = spec.get("count", 1)
        retry_after = spec.get("retry_after", 1)
        hang_seconds = spec.get("hang_seconds", 30.0)
        then = spec.get("then", "drop")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100000:
            raise SandboxError("count must be an integer between 1 and 100000")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or not 0 <= retry_after <= 86400:
            raise SandboxError("retry_after must be whole seconds between 0 and 86400")
        if isinstance(hang_seconds, bool) or not isinstance(hang_seconds, int | float) or not 0 <= hang_seconds <= 3600:
            raise SandboxError("hang_seconds must be between 0 and 3600")
        if then not in HANG_THEN:
            raise SandboxError(f"then must be one of {HANG_THEN} (used by mode 'hang')")
        return cls(
            id=fault_id,
            provider=provider,
            mode=mode,
            remaining=count,
            endpoint=endpoint,
            retry_after=retry_after,
            hang_seconds=float(hang_seconds),
            then=then,
        )

    def matches(self, provider: str, endpoint: str, stage: str) -> bool:
        """Whether this fault fires for a request of ``provider`` to an ``endpoint`` kind at ``stage``.

        Stage "before" is right after authentication (429, 5xx, hang); stage "accept" is right after
        the message was stored (accept_then_drop), so an invalid request does not use up that fault.
        """
        if self.remaining <= 0:
            return False
        if self.provider not in ("any", provider) or self.endpoint not in ("any", endpoint):
            return False
        return (self.mode == "accept_then_drop") == (stage == "accept")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "mode": self.mode,
            "endpoint": self.endpoint,
            "remaining": self.remaining,
            "applied": self.applied,
            "retry_after": self.retry_after,
            "hang_seconds": self.hang_seconds,
            "then": self.then,
        }


def iso_utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc2822(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return format_datetime(datetime.fromtimestamp(int(timestamp), UTC))


@dataclass
class EmailMessage:
    """One recipient of one accepted mail send: SendGrid's unit of delivery, with its own ``sg_message_id``."""

    msg_id: str
    x_message_id: str
    personalization_index: int
    to_email: str
    from_email: str
    subject: str | None
    template_id: str | None
    asm_group_id: int | None
    categories: list[str]
    custom_args: dict[str, str]
    send_at: int | None
    bypass_list_management: bool
    api_key_id: str
    created_at: float
    status: str = "processed"
    last_event_time: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)

    def activity(self) -> dict[str, Any]:
        """The Email Activity API's list entry (GET /v3/messages)."""
        return {
            "from_email": self.from_email,
            "msg_id": self.msg_id,
            "subject": self.subject,
            "to_email": self.to_email,
            "status": self.status,
            "opens_count": 0,
            "clicks_count": 0,
            "last_event_time": iso_utc(self.last_event_time or self.created_at),
        }

    def detail(self) -> dict[str, Any]:
        """The Email Activity API's message detail (GET /v3/messages/{msg_id})."""
        return {
            **self.activity(),
            "template_id": self.template_id,
            "asm_group_id": self.asm_group_id,
            "teammate": "",
            "api_key_id": self.api_key_id,
            "events": [
                {
                    "event_name": e["event"],
                    "processed": iso_utc(e["timestamp"]),
                    "reason": e.get("reason", ""),
                    "attempt_num": 1,
                    "url": "",
                    "bounce_type": e.get("type", ""),
                    "http_user_agent": "",
                    "mx_server": "mx.sandbox.invalid",
                }
                for e in self.events
            ],
            "originating_ip": "127.0.0.1",
            "categories": list(self.categories),
            "unique_args": dict(self.custom_args),
            "outbound_ip": "127.0.0.1",
            "outbound_ip_type": "dedicated",
        }

    def record(self) -> dict[str, Any]:
        """Everything the sandbox knows, for test assertions (GET /_sandbox/messages)."""
        return {
            **self.detail(),
            "x_message_id": self.x_message_id,
            "personalization_index": self.personalization_index,
            "custom_args": dict(self.custom_args),
            "send_at": self.send_at,
            "created_at": iso_utc(self.created_at),
        }


@dataclass
class MailSendRequest:
    """One accepted POST /v3/mail/send: the X-Message-Id and the per-recipient messages it became."""

    x_message_id: str
    accepted_at: float
    personalizations: int
    msg_ids: list[str]
    api_key_id: str
    send_at: int | None

    def record(self) -> dict[str, Any]:
        return {
            "x_message_id": self.x_message_id,
            "accepted_at": iso_utc(self.accepted_at),
            "personalizations": self.personalizations,
            "recipients": len(self.msg_ids),
            "msg_ids": list(self.msg_ids),
        }


@dataclass
class SmsMessage:
    """A Twilio Message resource as the sandbox stores it (outbound or inbound)."""

    sid: str
    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status: str
    direction: str
    date_created: float
    date_updated: float
    num_segments: int
    status_callback: str | None = None
    date_sent: float | None = None
    error_code: int | None = None
    error_message: str | None = None
    auth_token: str | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"/{TWILIO_API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The JSON Twilio returns for a Message (create, fetch and list entries)."""
        base = self.uri[: -len(".json")]
        return {
            "account_sid": self.account_sid,
            "api_version": TWILIO_API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_sent": rfc2822(self.date_sent),
            "date_updated": rfc2822(self.date_updated),
            "direction": self.direction,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(self.num_segments),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": self.status,
            "subresource_uris": {"media": f"{base}/Media.json", "feedback": f"{base}/Feedback.json"},
            "to": self.to,
            "uri": self.uri,
        }

    def record(self) -> dict[str, Any]:
        return {**self.resource(), "status_callback": self.status_callback}


def api_key_id(key: str) -> str:
    """A stable, non-secret name for an API key (SendGrid shows key ids, never keys)."""
    return hashlib.sha256(key.encode()).hexdigest()[:22]


class SandboxState:
    """The sandbox's memory: one instance per server, shared by the API, the control API and the dispatcher."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.lock = threading.RLock()
        self._startup_settings = settings or SandboxSettings()
        self._settings = self._startup_settings
        self._fault_ids = itertools.count(1)
        self._clear()

    def _clear(self) -> None:
        self.faults: list[Fault] = []
        self.mail_requests: dict[str, MailSendRequest] = {}
        self.emails: dict[str, EmailMessage] = {}
        self.sms: dict[str, SmsMessage] = {}
        # (address, asm group or None for global) -> reason
        self.email_suppressions: dict[tuple[str, int | None], str] = {}
        self.sms_opt_outs: set[tuple[str, str]] = set()
        self.seen_twilio_tokens: dict[str, str] = {}
        self.requests: Counter[str] = Counter()
        self.responses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.counters: Counter[str] = Counter()
        self.webhook_log: deque[dict[str, Any]] = deque(maxlen=1000)

    # settings ---------------------------------------------------------------------------------

    @property
    def settings(self) -> SandboxSettings:
        with self.lock:
            return self._settings

    def update_settings(self, changes: Mapping[str, Any]) -> SandboxSettings:
        with self.lock:
            self._settings = self._settings.updated(changes)
            return self._settings

    def reset(self) -> None:
        """Forget messages, faults, suppressions and counters; settings go back to what the server started with."""
        with self.lock:
            self._settings = self._startup_settings
            self._clear()

    # counters ---------------------------------------------------------------------------------

    def count_request(self, endpoint: str) -> None:
        with self.lock:
            self.requests[endpoint] += 1

    def count_response(self, endpoint: str, status: int | str) -> None:
        with self.lock:
            self.responses[endpoint][str(status)] += 1

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    def log_webhook(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.webhook_log.append(entry)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            webhooks = {k.split(".", 1)[1]: v for k, v in self.counters.items() if k.startswith("webhook.")}
            return {
                "requests": dict(self.requests),
                "responses": {endpoint: dict(codes) for endpoint, codes in self.responses.items()},
                "accepted": {
                    "sendgrid_requests": len(self.mail_requests),
                    "sendgrid_messages": len(self.emails),
                    "twilio_messages": sum(1 for m in self.sms.values() if m.direction != "inbound"),
                    "twilio_inbound": sum(1 for m in self.sms.values() if m.direction == "inbound"),
                },
                "faults": {
                    "applied": {k.split(".", 1)[1]: v for k, v in self.counters.items() if k.startswith("fault.")},
                    "pending": sum(f.remaining for f in self.faults),
                },
                "dropped_connections": self.counters["dropped_connections"],
                "webhooks": webhooks,
            }

    # faults -----------------------------------------------------------------------------------

    def add_fault(self, spec: Mapping[str, Any]) -> Fault:
        with self.lock:
            fault = Fault.from_spec(next(self._fault_ids), spec)
            self.faults.append(fault)
            return copy.copy(fault)

    def take_fault(self, provider: str, endpoint: str, stage: str) -> Fault | None:
        """Use up one application of the oldest fault matching this request, if any."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(provider, endpoint, stage):
                    fault.remaining -= 1
                    fault.applied += 1
                    self.counters[f"fault.{fault.mode}"] += 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                    return copy.copy(fault)
            return None

    def clear_faults(self) -> int:
        with self.lock:
            cleared = len(self.faults)
            self.faults = []
            return cleared

    def list_faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f.as_dict() for f in self.faults]

    # credentials ------------------------------------------------------------------------------

    def sendgrid_key_allowed(self, key: str) -> bool:
        keys = self.settings.sendgrid_api_keys
        return bool(key) and (not keys or key in keys)

    def twilio_credentials_allowed(self, account_sid: str, token: str) -> bool:
        accounts = self.settings.twilio_accounts
        if not account_sid or not token:
            return False
        if accounts:
            return accounts.get(account_sid) == token
        with self.lock:
            self.seen_twilio_tokens[account_sid] = token
        return True

    def twilio_token(self, account_sid: str) -> str | None:
        """The auth token webhooks of this account are signed with: configured, else the last one a client used."""
        configured = self.settings.twilio_accounts.get(account_sid)
        if configured:
            return configured
        with self.lock:
            return self.seen_twilio_tokens.get(account_sid)

    def default_twilio_account(self) -> str | None:
        accounts = list(self.settings.twilio_accounts)
        with self.lock:
            seen = list(self.seen_twilio_tokens)
        candidates = accounts or seen
        return candidates[0] if len(candidates) == 1 else None

    # email ------------------------------------------------------------------------------------

    def add_mail(self, request: MailSendRequest, messages: Iterable[EmailMessage]) -> None:
        with self.lock:
            self.mail_requests[request.x_message_id] = request
            for message in messages:
                self.emails[message.msg_id] = message

    def emails_matching_id(self, msg_id: str) -> list[EmailMessage]:
        """Messages with this sg_message_id, or all recipients of the request with this X-Message-Id."""
        with self.lock:
            if msg_id in self.emails:
                return [self.emails[msg_id]]
            request = self.mail_requests.get(msg_id)
            return [self.emails[m] for m in request.msg_ids] if request else []

    def query_emails(self, predicate: Callable[[EmailMessage], bool], limit: int) -> list[dict[str, Any]]:
        with self.lock:
            newest_first = sorted(self.emails.values(), key=lambda m: m.created_at, reverse=True)
            return [m.activity() for m in newest_first if predicate(m)][:limit]

    def email_detail(self, msg_id: str) -> dict[str, Any] | None:
        with self.lock:
            message = self.emails.get(msg_id)
            return message.detail() if message else None

    def suppress_email(self, address: str, reason: str, group: int | None = None) -> None:
        with self.lock:
            self.email_suppressions[(address.lower(), group)] = reason

    def email_suppression(self, message: EmailMessage) -> str | None:
        """Why SendGrid would drop this message (global bounce/spam/unsubscribe, or its group), else None."""
        if message.bypass_list_management:
            return None
        with self.lock:
            address = message.to_email.lower()
            reason = self.email_suppressions.get((address, None))
            if reason is None and message.asm_group_id is not None:
                reason = self.email_suppressions.get((address, message.asm_group_id))
            return reason

    # sms --------------------------------------------------------------------------------------

    def add_sms(self, message: SmsMessage) -> None:
        with self.lock:
            self.sms[message.sid] = message

    def get_sms(self, account_sid: str, sid: str) -> SmsMessage | None:
        with self.lock:
            message = self.sms.get(sid)
            return message if message and message.account_sid == account_sid else None

    def list_sms(self, account_sid: str, predicate: Callable[[SmsMessage], bool]) -> list[SmsMessage]:
        with self.lock:
            matching = [m for m in self.sms.values() if m.account_sid == account_sid and predicate(m)]
            return sorted(matching, key=lambda m: (m.date_created, m.sid), reverse=True)

    def set_opt_out(self, account_sid: str, number: str, opted_out: bool) -> None:
        with self.lock:
            if opted_out:
                self.sms_opt_outs.add((account_sid, number))
            else:
                self.sms_opt_outs.discard((account_sid, number))

    def is_opted_out(self, account_sid: str, number: str) -> bool:
        with self.lock:
            return (account_sid, number) in self.sms_opt_outs

    # listing ----------------------------------------------------------------------------------

    def messages_snapshot(self, provider: str | None = None) -> dict[str, Any]:
        """Everything accepted, oldest first, for assertions in tests."""
        with self.lock:
            result: dict[str, Any] = {}
            if provider in (None, "sendgrid"):
                result["sendgrid"] = [
                    m.record() for m in sorted(self.emails.values(), key=lambda m: (m.created_at, m.msg_id))
                ]
                result["sendgrid_requests"] = [
                    r.record() for r in sorted(self.mail_requests.values(), key=lambda r: r.accepted_at)
                ]
            if provider in (None, "twilio"):
                result["twilio"] = [m.record() for m in sorted(self.sms.values(), key=lambda m: m.date_created)]
            return result
