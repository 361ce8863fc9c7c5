"""The local provider sandbox and webhook receiver, started together for `reactivation run` and tests.

The sandbox stands in for SendGrid and Twilio; the receiver takes the signed
events it posts back and writes them to the warehouse. Both listen on
127.0.0.1 on ports the OS picks, in threads of this process, and stop when
the context exits. The yielded environment holds the Airflow connections
that point the pipeline at them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote

SANDBOX_SENDGRID_KEY = "SG.local-sandbox-key"
SANDBOX_ACCOUNT_SID = "AC" + "0" * 31 + "1"
SANDBOX_AUTH_TOKEN = "local-sandbox-token"
SANDBOX_FROM_NUMBER = "+15005550006"
SANDBOX_FROM_EMAIL = "care@reactivation.example"


class _Receiver:
    """The webhook receiver app under uvicorn in a daemon thread, on an already-bound socket."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="webhook-receiver", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def provider_connections(sandbox_url: str, receiver_url: str) -> dict[str, str]:
    """AIRFLOW_CONN_* values pointing the providers at the sandbox and their callbacks at the receiver."""
    host_port = sandbox_url.split("://", 1)[1]
    status_callback = quote(f"{receiver_url}/twilio/status", safe="")
    return {
        "AIRFLOW_CONN_SENDGRID_DEFAULT": (
            f"sendgrid://:{SANDBOX_SENDGRID_KEY}@{host_port}?from_email={quote(SANDBOX_FROM_EMAIL, safe='')}"
        ),
        "AIRFLOW_CONN_SMS_DEFAULT": (
            f"sms://{SANDBOX_ACCOUNT_SID}:{SANDBOX_AUTH_TOKEN}@{host_port}"
            f"?from_number={quote(SANDBOX_FROM_NUMBER, safe='')}&status_callback={status_callback}"
        ),
    }


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Hold the named loggers at WARNING for the block; their own levels come back afterwards."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextlib.contextmanager
def local_providers(url: str) -> Iterator[dict[str, str]]:
    """Start the sandbox and the receiver; yield the connection environment; drain and stop both."""
    import httpx

    from reactivation.sandbox.server import SandboxServer
    from reactivation.webhooks.app import create_app
    from reactivation.webhooks.schema import ensure_webhook_schema

    ensure_webhook_schema(url)
    # Per-request counts are for the service's own log; the run prints its own summary.
    with _quiet("reactivation.webhooks", "reactivation.sandbox"), SandboxServer(port=0) as sandbox:
        key = httpx.get(f"{sandbox.url}/_sandbox/sendgrid/public-key", timeout=5, trust_env=False).json()["public_key"]
        receiver = _Receiver(
            create_app(url, sendgrid_public_key=key, twilio_auth_token=SANDBOX_AUTH_TOKEN, public_base_url=None)
        )
        receiver.start()
        try:
            httpx.post(
                f"{sandbox.url}/_sandbox/config",
                json={
                    "events_url": f"{receiver.url}/sendgrid/events",
                    "twilio_inbound_url": f"{receiver.url}/twilio/inbound",
                },
                timeout=5,
                trust_env=False,
            ).raise_for_status()
            yield {**provider_connections(sandbox.url, receiver.url), "REACTIVATION_SANDBOX_URL": sandbox.url}
            # Let delivery events reach the receiver before the report reads them.
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"{sandbox.url}/_sandbox/drain", json={"timeout": 15}, timeout=20, trust_env=False)
        finally:
            receiver.stop()
