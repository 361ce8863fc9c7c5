"""Run the sandbox on a real socket: in a background thread (tests, the demo) or in the foreground (CLI, Compose).

``SandboxServer(port=0).start()`` binds first, so the OS-chosen port is known before uvicorn runs,
and returns once the server accepts connections. ``stop()`` is bounded: hanging fault requests give
up at once and uvicorn cancels whatever is left after two seconds. uvicorn's access log stays off
because request lines carry query strings (a recipient in an Activity query, a phone number in a
Messages list); the sandbox logs its own lines with ids and counts only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import uvicorn
from starlette.types import Scope

from reactivation.sandbox.app import create_app
from reactivation.sandbox.core import Sandbox
from reactivation.sandbox.signing import EventWebhookSigner
from reactivation.sandbox.state import SandboxSettings

ENV_PREFIX = "REACTIVATION_SANDBOX_"
GRACEFUL_SHUTDOWN_SECONDS = 2


class SandboxServer:
    """One sandbox behind uvicorn; usable as a context manager that yields the started server."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        settings: SandboxSettings | None = None,
        sendgrid_key_file: Path | None = None,
        **setting_changes: Any,
    ) -> None:
        settings = (settings or SandboxSettings()).updated(setting_changes)
        signer = EventWebhookSigner.from_file(sendgrid_key_file) if sendgrid_key_file else None
        self.host = host
        self.sandbox = Sandbox(settings, signer=signer)
        self.sandbox.connection_dropper = self._drop_connection
        self.app = create_app(self.sandbox)
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # addresses --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the sandbox server is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL for SDKs and the control API (a wildcard bind is reached through loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    # lifecycle --------------------------------------------------------------------------------

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        return sock

    def _uvicorn(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
        return uvicorn.Server(config)

    def start(self, timeout: float = 10.0) -> str:
        """Start in a background thread; returns the base URL once connections are accepted."""
        if self._thread is not None:
            return self.url
        self._socket = self._bind()
        self._server = self._uvicorn()
        self.sandbox.start()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="provider-sandbox", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the provider sandbox did not start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        return self.url

    def serve_forever(self) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (the CLI and the Compose service)."""
        self._socket = self._bind()
        self._server = self._uvicorn()
        self.sandbox.start()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal under the handler that was
        # installed before it ran; a no-op there makes `docker stop` a clean exit (status 0).
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            self._server.run(sockets=[self._socket])
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.sandbox.stop()
            self._socket.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end hanging requests, wait for the thread (bounded), stop the webhook worker."""
        self.sandbox.closing.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
            self._thread = None
        self.sandbox.stop()
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> SandboxServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # fault support ----------------------------------------------------------------------------

    def _drop_connection(self, scope: Scope) -> bool:
        """Close the TCP connection a request arrived on, without a response (runs on the server's loop)."""
        client = scope.get("client")
        if self._server is None or not client:
            return False
        for connection in list(self._server.server_state.connections):
            if getattr(connection, "client", None) == tuple(client):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.close()
                    return True
        return False


def _connection_parts(raw: str) -> tuple[str | None, str | None]:
    """(login, password) of an ``AIRFLOW_CONN_*`` value in URI or JSON form."""
    raw = raw.strip()
    if raw.startswith("{"):
        try:
            conn = json.loads(raw)
        except ValueError:
            return None, None
        return conn.get("login") or None, conn.get("password") or None
    parts = urlsplit(raw)
    login = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return login, password


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Setting changes from ``REACTIVATION_SANDBOX_*`` variables and the pipeline's provider connections.

    The sandbox trusts the credentials the pipeline's own connections carry (AIRFLOW_CONN_SENDGRID_DEFAULT's
    password, AIRFLOW_CONN_SMS_DEFAULT's login and password), so in Compose both sides share one .env and
    a wrong key gets the same 401 it would get from the real API.
    """
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for name in ("EVENTS_URL", "TWILIO_INBOUND_URL", "TWILIO_STATUS_CALLBACK_URL"):
        if env.get(ENV_PREFIX + name):
            changes[name.lower()] = env[ENV_PREFIX + name]
    if env.get(ENV_PREFIX + "DELIVERY_DELAY"):
        try:
            changes["delivery_delay"] = float(env[ENV_PREFIX + "DELIVERY_DELAY"])
        except ValueError:
            changes["delivery_delay"] = env[ENV_PREFIX + "DELIVERY_DELAY"]  # rejected with a clear message
    sendgrid_key = env.get(ENV_PREFIX + "SENDGRID_API_KEY")
    if not sendgrid_key and env.get("AIRFLOW_CONN_SENDGRID_DEFAULT"):
        sendgrid_key = _connection_parts(env["AIRFLOW_CONN_SENDGRID_DEFAULT"])[1]
    if sendgrid_key:
        changes["sendgrid_api_keys"] = [sendgrid_key]
    account, token = env.get(ENV_PREFIX + "TWILIO_ACCOUNT_SID"), env.get(ENV_PREFIX + "TWILIO_AUTH_TOKEN")
    if not (account and token) and env.get("AIRFLOW_CONN_SMS_DEFAULT"):
        account, token = _connection_parts(env["AIRFLOW_CONN_SMS_DEFAULT"])
    if account and token:
        changes["twilio_accounts"] = {account: token}
    return changes
