"""Email through the official SendGrid SDK (v3 Mail Send), up to 1000 personalizations per request.

Each personalization carries only the outreach id in ``custom_args``; categories
name the channel and rule, never anything about the patient. Messages with the
same content (location, rule, language) share a request.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
from collections import defaultdict
from functools import cached_property

from python_http_client import exceptions as http_errors

from reactivation.outreach.connections import ProviderConnection
from reactivation.outreach.providers.base import OutboundMessage, SendResult

MAX_PERSONALIZATIONS = 1000
TIMEOUT_SECONDS = 20


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers and headers.get("Retry-After") else None
    except (TypeError, ValueError):
        return None


class SendGridEmailProvider:
    name = "sendgrid"
    channel = "email"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(self, connection: ProviderConnection) -> None:
        self.connection = connection
        self.from_email = connection.extra.get("from_email", "care@practice.example")
        self.from_name = connection.extra.get("from_name")
        self.asm_group_id = int(connection.extra["asm_group_id"]) if connection.extra.get("asm_group_id") else None

    @cached_property
    def client(self):
        from sendgrid import SendGridAPIClient

        client = SendGridAPIClient(api_key=self.connection.secret.get_secret_value(), host=self.connection.base_url)
        client.client.timeout = TIMEOUT_SECONDS
        return client

    def _payload(self, messages: list[OutboundMessage]) -> dict:
        first = messages[0]
        payload = {
            "personalizations": [
                {"to": [{"email": m.recipient}], "custom_args": {"outreach_id": m.outreach_key}} for m in messages
            ],
            "from": {"email": self.from_email, **({"name": self.from_name} if self.from_name else {})},
            "subject": first.subject,
            "content": [{"type": "text/plain", "value": first.body}],
            "categories": ["reactivation", first.rule_id],
            "tracking_settings": {"subscription_tracking": {"enable": self.asm_group_id is None}},
        }
        if self.asm_group_id is not None:
            payload["asm"] = {"group_id": self.asm_group_id}
        return payload

    def send(self, messages: list[OutboundMessage]) -> list[SendResult]:
        groups: dict[tuple, list[OutboundMessage]] = defaultdict(list)
        for message in messages:
            groups[(message.location_id, message.rule_id, message.language, message.subject, message.body)].append(
                message
            )
        results: list[SendResult] = []
        for group in groups.values():
            for start in range(0, len(group), MAX_PERSONALIZATIONS):
                results.extend(self._send_request(group[start : start + MAX_PERSONALIZATIONS]))
        return results

    def _send_request(self, messages: list[OutboundMessage]) -> list[SendResult]:
        def each(status: str, **kwargs) -> list[SendResult]:
            return [SendResult(m.outreach_key, status, self.name, **kwargs) for m in messages]

        try:
            response = self.client.client.mail.send.post(request_body=self._payload(messages))
        except http_errors.HTTPError as err:
            code = str(err.status_code)
            if err.status_code == 429 or err.status_code >= 500:
                return each("retry", error_code=code, retry_after=_retry_after(err.headers), response=f"HTTP {code}")
            return each("failed", error_code=code, response=f"HTTP {code}")
        except urllib.error.URLError as err:
            if isinstance(err.reason, ConnectionRefusedError | socket.gaierror):
                return each("retry", error_code="connect", response="could not connect; nothing was sent")
            return each("unknown", error_code="network", response="connection failed mid-request")
        except (TimeoutError, http.client.HTTPException, ConnectionError):
            return each("unknown", error_code="no_response", response="no answer; the provider may have accepted it")
        message_id = response.headers.get("X-Message-Id")
        return each("accepted", provider_message_id=message_id, response=f"HTTP {response.status_code}")

    def lookup(self, outreach_key: str, recipient: str | None = None, since=None) -> SendResult | None:
        """Find a message by its outreach id through the Email Activity API."""
        query = f"unique_args['outreach_id']=\"{outreach_key}\""
        try:
            response = self.client.client.messages.get(query_params={"query": query, "limit": 10})
        except (http_errors.HTTPError, urllib.error.URLError, TimeoutError, http.client.HTTPException):
            return None
        messages = json.loads(response.body or b"{}").get("messages") or []
        if not messages:
            return None
        return SendResult(outreach_key, "accepted", self.name, provider_message_id=messages[0].get("msg_id"))
