"""The provider interface: send a list of messages, look one up by outreach key.

Results, not exceptions: ``accepted`` (the provider took it; its message id is
kept), ``retry`` (429 or 5xx: not accepted, safe to try again, with the
provider's Retry-After), ``failed`` (refused for good, e.g. an invalid number),
``unknown`` (the request may or may not have been accepted: timeout or dropped
connection; it must be reconciled, never re-sent blindly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class OutboundMessage:
    outreach_key: str
    channel: str
    recipient: str
    language: str
    subject: str | None
    body: str
    location_id: str
    rule_id: str


@dataclass(frozen=True)
class SendResult:
    outreach_key: str
    status: str  # accepted | retry | failed | unknown
    provider: str
    provider_message_id: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    response: str | None = None


class Provider(Protocol):
    name: str
    channel: str
    max_batch: int

    def send(self, messages: list[OutboundMessage]) -> list[SendResult]: ...

    def lookup(self, outreach_key: str, recipient: str | None = None, since=None) -> SendResult | None:
        """The provider's record of a message, if it accepted one (for reconciliation)."""
        ...
