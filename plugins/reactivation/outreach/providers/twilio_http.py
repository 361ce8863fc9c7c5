"""The twilio SDK's own HTTP client, pointed at a base URL.

The twilio SDK has no base-URL option (twilio-python issue #521; Twilio's answer is a custom HTTP
client), so ``RebasedTwilioHttpClient`` is the SDK's ``TwilioHttpClient`` with every
``https://*.twilio.com`` URL rewritten to the connection's base URL (the local sandbox by
default): every resource, pagination link and domain goes through it unchanged otherwise.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse

DEFAULT_TIMEOUT_SECONDS = 10.0

# TwilioHttpClient logs request URLs and query parameters (phone numbers) at INFO; keep them out of logs.
_QUIET_TWILIO_LOGGER = logging.getLogger("twilio.http_client.sandbox_quiet")
_QUIET_TWILIO_LOGGER.setLevel(logging.WARNING)


def _is_twilio_host(hostname: str | None) -> bool:
    return bool(hostname) and (hostname == "twilio.com" or str(hostname).endswith(".twilio.com"))


class RebasedTwilioHttpClient(TwilioHttpClient):
    """The twilio SDK's HTTP client, sending requests for ``https://*.twilio.com`` to ``base_url`` instead.

    ``last_response`` keeps the latest response (status, text, headers), so a caller can read
    headers such as Retry-After that the SDK's exceptions do not carry.
    """

    def __init__(self, base_url: str | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS, **kwargs: Any) -> None:
        kwargs.setdefault("logger", _QUIET_TWILIO_LOGGER)
        super().__init__(timeout=timeout, **kwargs)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.last_response: TwilioResponse | None = None

    def rebase(self, url: str) -> str:
        """``url`` with a Twilio host replaced by the base URL's scheme, host, port and path prefix."""
        if not self.base_url:
            return url
        parts = urlsplit(url)
        if not _is_twilio_host(parts.hostname):
            return url
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, parts.fragment))

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> TwilioResponse:
        response = super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        self.last_response = response
        return response
