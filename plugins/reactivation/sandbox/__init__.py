"""Local provider sandbox: a real HTTP server speaking the SendGrid v3 and Twilio APIs the pipeline uses.

The official SDKs talk to it unchanged except for the base URL; it posts signed webhooks back and
injects failures on demand (see docs/sandbox.md). Importing this package is cheap: the server,
Starlette and the SDKs load only when used, so the CLI can register ``reactivation sandbox serve``
without slowing other commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8025

_EXPORTS = {
    "SandboxServer": "reactivation.sandbox.server",
    "settings_from_environment": "reactivation.sandbox.server",
    "Sandbox": "reactivation.sandbox.core",
    "create_app": "reactivation.sandbox.app",
    "SandboxSettings": "reactivation.sandbox.state",
    "EventWebhookSigner": "reactivation.sandbox.signing",
    "twilio_signature": "reactivation.sandbox.signing",
    "RebasedTwilioHttpClient": "reactivation.outreach.providers.twilio_http",
    "SandboxControl": "reactivation.sandbox.clients",
    "SandboxControlError": "reactivation.sandbox.clients",
    "sendgrid_client": "reactivation.sandbox.clients",
    "twilio_client": "reactivation.sandbox.clients",
}

__all__ = [  # noqa: RUF022 - grouped: the command, then the lazily loaded API
    "DEFAULT_PORT",
    "add_subcommand",
    "SandboxServer",
    "settings_from_environment",
    "Sandbox",
    "create_app",
    "SandboxSettings",
    "EventWebhookSigner",
    "twilio_signature",
    "RebasedTwilioHttpClient",
    "SandboxControl",
    "SandboxControlError",
    "sendgrid_client",
    "twilio_client",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value


def _default_key_file() -> Path:
    import os

    from reactivation.settings import get_settings

    configured = os.environ.get("REACTIVATION_SANDBOX_SENDGRID_KEY_FILE")
    return Path(configured) if configured else get_settings().state_dir / "sandbox" / "sendgrid-event-webhook-key.pem"


def _cmd_serve(args: argparse.Namespace) -> int:
    from reactivation.sandbox.server import SandboxServer, settings_from_environment
    from reactivation.sandbox.state import SandboxError

    changes = settings_from_environment()
    if args.events_url:
        changes["events_url"] = args.events_url
    if args.delivery_delay is not None:
        changes["delivery_delay"] = args.delivery_delay
    key_file = args.sendgrid_key_file or _default_key_file()
    try:
        server = SandboxServer(args.host, args.port, sendgrid_key_file=key_file, **changes)
    except (SandboxError, ValueError, OSError) as err:
        print(f"reactivation sandbox: {err}", file=sys.stderr)
        return 2
    settings = server.sandbox.state.settings
    print(
        f"provider sandbox on http://{args.host}:{args.port} (SendGrid /v3, Twilio /2010-04-01, control /_sandbox); "
        f"events → {settings.events_url or 'not posted (no --events-url)'}; "
        f"credentials: {'configured' if settings.sendgrid_api_keys or settings.twilio_accounts else 'any accepted'}",
        file=sys.stderr,
    )
    print(f"SendGrid Event Webhook verification key: {server.sandbox.signer.public_key_base64()}", file=sys.stderr)
    try:
        server.serve_forever()
    except OSError as err:
        print(f"reactivation sandbox: cannot listen on {args.host}:{args.port}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Register ``reactivation sandbox serve`` on the CLI's subparsers."""
    sandbox = subparsers.add_parser(
        "sandbox",
        help="local provider sandbox: SendGrid v3 and Twilio HTTP APIs with signed webhooks and fault injection",
        description="Local provider sandbox speaking the SendGrid v3 and Twilio APIs (see docs/sandbox.md).",
    )
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    serve = commands.add_parser("serve", help="serve the sandbox in the foreground until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument(
        "--events-url",
        type=_url,
        help="where to post signed SendGrid Event Webhook batches "
        "(default: REACTIVATION_SANDBOX_EVENTS_URL; unset: events are not posted)",
    )
    serve.add_argument(
        "--sendgrid-key-file",
        type=Path,
        help="PEM file with the Event Webhook signing key, created on first start so the public key stays stable "
        "(default: REACTIVATION_SANDBOX_SENDGRID_KEY_FILE, "
        "else $REACTIVATION_STATE_DIR/sandbox/sendgrid-event-webhook-key.pem)",
    )
    serve.add_argument(
        "--delivery-delay",
        type=float,
        help="seconds from acceptance to the 'delivered' event (default 0.1)",
    )
    serve.set_defaults(func=_cmd_serve)
