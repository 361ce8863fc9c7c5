"""Provider connections, read from Airflow connections (``AIRFLOW_CONN_*``), never from code.

``AIRFLOW_CONN_SENDGRID_DEFAULT``: ``sendgrid://:API_KEY@HOST[:PORT]?from_email=...&asm_group_id=...``
``AIRFLOW_CONN_SMS_DEFAULT``: ``sms://ACCOUNT_SID:AUTH_TOKEN@HOST[:PORT]?from_number=...&status_callback=...``

The host is the local provider sandbox by default (``reactivation run`` starts
one and sets both); pointing at the real APIs is a change of host and keys:
``api.sendgrid.com`` and ``api.twilio.com`` are reached over HTTPS.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr

REAL_HOSTS = {"api.sendgrid.com", "api.twilio.com"}


class ConnectionError_(ValueError):
    """A provider connection is missing or malformed (the message names it, never its secret)."""


@dataclass(frozen=True)
class ProviderConnection:
    conn_id: str
    base_url: str
    login: str
    secret: SecretStr
    extra: dict[str, str] = field(default_factory=dict)


def provider_connection(conn_id: str) -> ProviderConnection:
    env_name = f"AIRFLOW_CONN_{conn_id.upper()}"
    raw = os.environ.get(env_name)
    if not raw:
        raise ConnectionError_(f"{env_name} is not set: point it at the provider sandbox or the real API")
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            raise ConnectionError_(f"{env_name} is not valid JSON") from None
        host, port = data.get("host") or "", data.get("port")
        login, password = data.get("login") or "", data.get("password") or ""
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
    else:
        parts = urlsplit(raw)
        host, port = parts.hostname or "", parts.port
        login, password = unquote(parts.username or ""), unquote(parts.password or "")
        extra = dict(parse_qsl(parts.query))
    if not host:
        raise ConnectionError_(f"{env_name} has no host")
    protocol = extra.pop("protocol", "https" if host in REAL_HOSTS else "http")
    base_url = f"{protocol}://{host}{f':{port}' if port else ''}"
    return ProviderConnection(conn_id, base_url, login, SecretStr(password), {k: str(v) for k, v in extra.items()})
