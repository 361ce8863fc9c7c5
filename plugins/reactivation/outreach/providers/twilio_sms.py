"""SMS through the official Twilio SDK, pointed at the connection's host.

The SDK always builds ``https://api.twilio.com/...`` URLs; its HTTP client is
swapped for one that rebases them onto the connection's base URL (the local
sandbox by default), so the SDK's own request building, auth and error
handling stay in use, and the last response's headers (Retry-After) are kept.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

import requests

from reactivation.outreach.connections import ProviderConnection
from reactivation.outreach.providers.base import OutboundMessage, SendResult

TIMEOUT_SECONDS = 20


class TwilioSmsProvider:
    name = "twilio"
    channel = "sms"
    max_batch = 100

    def __init__(self, connection: ProviderConnection) -> None:
        self.connection = connection
        self.from_number = connection.extra.get("from_number")
        self.messaging_service_sid = connection.extra.get("messaging_service_sid")
        self.status_callback = connection.extra.get("status_callback")

    @cached_property
    def client(self):
        from twilio.rest import Client

        from reactivation.outreach.providers.twilio_http import RebasedTwilioHttpClient

        return Client(
            self.connection.login,
            self.connection.secret.get_secret_value(),
            http_client=RebasedTwilioHttpClient(self.connection.base_url, timeout=TIMEOUT_SECONDS),
        )

    def _retry_after(self) -> float | None:
        response = getattr(self.client.http_client, "last_response", None)
        headers = getattr(response, "headers", None) or {}
        try:
            return float(headers.get("Retry-After")) if headers.get("Retry-After") else None
        except (TypeError, ValueError):
            return None

    def send(self, messages: list[OutboundMessage]) -> list[SendResult]:
        return [self._send_one(message) for message in messages]

    def _send_one(self, message: OutboundMessage) -> SendResult:
        from twilio.base.exceptions import TwilioRestException

        kwargs = {"to": message.recipient, "body": message.body}
        if self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = f"{self.status_callback}?outreach_key={message.outreach_key}"
        try:
            created = self.client.messages.create(**kwargs)
        except TwilioRestException as err:
            code = str(err.code or err.status)
            if err.status == 429 or err.status >= 500:
                return SendResult(message.outreach_key, "retry", self.name, error_code=code,
                                  retry_after=self._retry_after(), response=f"HTTP {err.status}")  # fmt: skip
            return SendResult(message.outreach_key, "failed", self.name, error_code=code, response=f"HTTP {err.status}")
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as err:
            return SendResult(
                message.outreach_key, "retry", self.name, error_code="connect", response=type(err).__name__
            )
        except requests.exceptions.ConnectionError as err:
            if "NewConnectionError" in repr(err) or "Connection refused" in repr(err):
                return SendResult(message.outreach_key, "retry", self.name, error_code="connect",
                                  response="could not connect; nothing was sent")  # fmt: skip
            return SendResult(message.outreach_key, "unknown", self.name, error_code="network",
                              response="connection dropped; the provider may have accepted it")  # fmt: skip
        except requests.exceptions.Timeout:
            return SendResult(message.outreach_key, "unknown", self.name, error_code="no_response",
                              response="no answer; the provider may have accepted it")  # fmt: skip
        return SendResult(message.outreach_key, "accepted", self.name, provider_message_id=created.sid,
                          response=str(created.status))  # fmt: skip

    def lookup(
        self, outreach_key: str, recipient: str | None = None, since: datetime | None = None
    ) -> SendResult | None:
        """A message to this number since the attempt (the per-person daily cap makes it unambiguous)."""
        if not recipient:
            return None
        try:
            found = self.client.messages.list(to=recipient, date_sent_after=since, limit=5)
        except Exception:
            return None
        if not found:
            return None
        return SendResult(outreach_key, "accepted", self.name, provider_message_id=found[0].sid)
