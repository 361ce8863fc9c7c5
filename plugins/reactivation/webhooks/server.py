"""``reactivation webhooks serve``: run the receiver with uvicorn, configured from the environment only.

Importing this module stays cheap (the CLI imports it to register the command): uvicorn, Starlette,
httpx and the provider SDKs load only when the receiver starts.

Settings (secrets never on the command line, where ``ps`` would show them):

- ``WAREHOUSE_URL`` or ``AIRFLOW_CONN_REACTIVATION_WAREHOUSE``; neither: the embedded warehouse.
- ``REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY``: the Signed Event Webhook verification key (base64
  DER, as SendGrid shows it). Unset while ``AIRFLOW_CONN_SENDGRID_DEFAULT`` points at the provider
  sandbox: the key is fetched from the sandbox at start-up (development only; the sandbox's key is
  generated on its first start, so it cannot be written into ``.env`` beforehand).
- ``REACTIVATION_TWILIO_AUTH_TOKEN``, else the password of ``AIRFLOW_CONN_SMS_DEFAULT``.
- ``REACTIVATION_WEBHOOK_PUBLIC_URL``: the scheme, host and path prefix Twilio posts to, when a proxy
  sits in between (Twilio signs the URL it was given, not the one this process sees).
- ``REACTIVATION_WEBHOOK_TIMESTAMP_TOLERANCE``: seconds a SendGrid signature stays valid (default 300).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from dataclasses import dataclass

from reactivation.settings import SettingsError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8030
DEFAULT_TOLERANCE_S = 300
SANDBOX_KEY_WAIT_S = 60.0


@dataclass(frozen=True)
class ReceiverSettings:
    """What the receiver needs besides the warehouse; ``repr`` hides the secrets."""

    sendgrid_public_key: str
    twilio_auth_token: str
    public_base_url: str | None
    timestamp_tolerance_s: int

    def __repr__(self) -> str:
        return (
            f"ReceiverSettings(public_base_url={self.public_base_url!r}, "
            f"timestamp_tolerance_s={self.timestamp_tolerance_s}, secrets=***)"
        )


def _sandbox_public_key(base_url: str, wait_s: float) -> str:
    """The sandbox's current verification key; waits for the sandbox to come up (Compose starts it after us)."""
    import httpx

    deadline = time.monotonic() + wait_s
    while True:
        try:
            response = httpx.get(f"{base_url}/_sandbox/sendgrid/public-key", timeout=5.0, trust_env=False)
            response.raise_for_status()
            key = response.json().get("public_key")
            if isinstance(key, str) and key:
                return key
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() >= deadline:
            raise SettingsError(
                "REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY is not set and the provider sandbox did not answer "
                f"with its key within {wait_s:g}s"
            )
        time.sleep(1.0)


def _sendgrid_key(wait_s: float) -> str:
    key = os.environ.get("REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY", "").strip()
    if key:
        return key
    from reactivation.outreach.connections import REAL_HOSTS, ConnectionError_, provider_connection

    try:
        connection = provider_connection("sendgrid_default")
    except ConnectionError_:
        connection = None
    host = connection.base_url.split("://", 1)[-1].split(":")[0] if connection else ""
    if connection is None or host in REAL_HOSTS:
        raise SettingsError(
            "set REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY to the Event Webhook verification key "
            "(SendGrid: Settings > Mail Settings > Signed Event Webhook)"
        )
    log.info("using the provider sandbox's event webhook key (development only)")
    return _sandbox_public_key(connection.base_url, wait_s)


def twilio_auth_token() -> str:
    """The Twilio auth token the receiver checks signatures with (and keys ``sender_key`` with)."""
    token = os.environ.get("REACTIVATION_TWILIO_AUTH_TOKEN", "").strip()
    if token:
        return token
    from reactivation.outreach.connections import ConnectionError_, provider_connection

    try:
        token = provider_connection("sms_default").secret.get_secret_value()
    except ConnectionError_:
        token = ""
    if not token:
        raise SettingsError("set REACTIVATION_TWILIO_AUTH_TOKEN (or the password of AIRFLOW_CONN_SMS_DEFAULT)")
    return token


def receiver_settings(
    *, tolerance_s: int | None = None, sandbox_wait_s: float = SANDBOX_KEY_WAIT_S
) -> ReceiverSettings:
    """Read the receiver's settings from the environment; raises SettingsError naming what is missing."""
    if tolerance_s is None:
        raw = os.environ.get("REACTIVATION_WEBHOOK_TIMESTAMP_TOLERANCE", str(DEFAULT_TOLERANCE_S)).strip()
        if not raw.isdigit() or int(raw) <= 0:
            raise SettingsError("REACTIVATION_WEBHOOK_TIMESTAMP_TOLERANCE must be a positive number of seconds")
        tolerance_s = int(raw)
    public_url = os.environ.get("REACTIVATION_WEBHOOK_PUBLIC_URL", "").strip() or None
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise SettingsError("REACTIVATION_WEBHOOK_PUBLIC_URL must start with http:// or https://")
    return ReceiverSettings(
        sendgrid_public_key=_sendgrid_key(sandbox_wait_s),
        twilio_auth_token=twilio_auth_token(),
        public_base_url=public_url,
        timestamp_tolerance_s=tolerance_s,
    )


def serve(host: str, port: int, *, tolerance_s: int | None = None) -> int:
    """Ensure the tables, then serve until interrupted (uvicorn handles SIGTERM gracefully)."""
    import uvicorn

    from reactivation.warehouse import warehouse_url
    from reactivation.webhooks.app import create_app
    from reactivation.webhooks.schema import ensure_webhook_schema

    settings = receiver_settings(tolerance_s=tolerance_s)
    with warehouse_url() as url:
        ensure_webhook_schema(url)
        try:
            app = create_app(
                url,
                sendgrid_public_key=settings.sendgrid_public_key,
                twilio_auth_token=settings.twilio_auth_token,
                public_base_url=settings.public_base_url,
                timestamp_tolerance_s=settings.timestamp_tolerance_s,
            )
        except ValueError as err:
            raise SettingsError(str(err)) from None
        log.info("webhook receiver listening on %s:%d", host, port)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler that was
        # installed before it started; a no-op handler turns Compose's stop into a clean exit 0.
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=True)
        finally:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    return serve(args.host, args.port, tolerance_s=args.timestamp_tolerance)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Register ``reactivation webhooks serve`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "webhooks",
        help="receive provider webhooks (SendGrid events, Twilio status callbacks and replies)",
        description="Receive SendGrid's signed Event Webhook and Twilio's status callbacks and inbound messages.",
    )
    actions = parser.add_subparsers(dest="webhooks_action", required=True)
    serve_parser = actions.add_parser("serve", help="run the receiver (settings from the environment)")
    serve_parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve_parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve_parser.add_argument(
        "--timestamp-tolerance",
        type=int,
        default=None,
        help="seconds a SendGrid signature stays valid (default: REACTIVATION_WEBHOOK_TIMESTAMP_TOLERANCE or 300)",
    )
    serve_parser.set_defaults(func=_cmd_serve)
