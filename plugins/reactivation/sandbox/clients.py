"""Pointing the official SDKs at the sandbox (or at the real APIs), and a small client for the control API.

SendGrid's client takes a ``host``: ``SendGridAPIClient(api_key, host="http://127.0.0.1:8025")``.
The twilio SDK has no base-URL option: its client gets the product's ``RebasedTwilioHttpClient``
(reactivation.outreach.providers.twilio_http). Both helpers set a hard timeout on every call.
"""

from __future__ import annotations

from typing import Any

import httpx

from reactivation.outreach.providers.twilio_http import DEFAULT_TIMEOUT_SECONDS, RebasedTwilioHttpClient


def twilio_client(
    account_sid: str, auth_token: str, base_url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> Any:
    """A ``twilio.rest.Client`` for ``base_url`` (the sandbox) or, with None, the real Twilio API."""
    from twilio.rest import Client

    return Client(account_sid, auth_token, http_client=RebasedTwilioHttpClient(base_url, timeout=timeout))


def sendgrid_client(api_key: str, base_url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Any:
    """A ``SendGridAPIClient`` for ``base_url`` (the sandbox) or, with None, the real SendGrid API."""
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key, host=base_url.rstrip("/")) if base_url else SendGridAPIClient(api_key)
    client.client.timeout = timeout  # python_http_client passes it to urlopen on every call
    return client


class SandboxControlError(RuntimeError):
    """The control API refused a request; the message is the sandbox's explanation."""


class SandboxControl:
    """The ``/_sandbox`` control API over HTTP, for tests and scripts that run the sandbox elsewhere."""

    def __init__(self, base_url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, f"/_sandbox{path}", **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("error", response.text)
            except ValueError:
                detail = response.text
            raise SandboxControlError(f"{method} /_sandbox{path}: {response.status_code} {detail}")
        return response.json()

    def add_fault(self, mode: str, provider: str = "any", count: int = 1, **options: Any) -> dict[str, Any]:
        """Inject ``mode`` into the next ``count`` matching requests (options: endpoint, retry_after, ...)."""
        return self._call("POST", "/faults", json={"mode": mode, "provider": provider, "count": count, **options})

    def clear_faults(self) -> int:
        return int(self._call("DELETE", "/faults")["cleared"])

    def reset(self) -> None:
        self._call("POST", "/reset")

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/config", json=changes)

    def messages(self, provider: str | None = None) -> dict[str, Any]:
        return self._call("GET", "/messages", params={"provider": provider} if provider else None)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def public_key(self) -> str:
        return str(self._call("GET", "/sendgrid/public-key")["public_key"])

    def sendgrid_event(self, event_type: str, msg_id: str, reason: str | None = None) -> list[str]:
        body = {"type": event_type, "msg_id": msg_id, **({"reason": reason} if reason else {})}
        return list(self._call("POST", "/sendgrid/event", json=body)["msg_ids"])

    def inbound_sms(self, from_: str, to: str, body: str, url: str | None = None, **options: Any) -> str:
        payload = {"from": from_, "to": to, "body": body, **({"url": url} if url else {}), **options}
        return str(self._call("POST", "/twilio/inbound", json=payload)["sid"])

    def sms_status(self, sid: str, status: str, error_code: int | None = None) -> dict[str, Any]:
        body = {"sid": sid, "status": status, **({"error_code": error_code} if error_code is not None else {})}
        return self._call("POST", "/twilio/status", json=body)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every scheduled event and webhook post is done; False if ``timeout`` passed first."""
        return bool(self._call("POST", "/drain", json={"timeout": timeout}, timeout=timeout + 5)["idle"])

    def webhooks(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/webhooks")["webhooks"])
