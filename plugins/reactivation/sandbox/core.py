"""The parts of one running sandbox, and the HTTP-level behaviour both provider APIs share.

Shared behaviour: request counting, injected faults (429 with Retry-After, 5xx, hang, drop) and
closing a connection without any response, which is how "the provider accepted it but we never
heard back" looks to a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from reactivation.sandbox.dispatch import WebhookDispatcher
from reactivation.sandbox.events import ProviderEvents
from reactivation.sandbox.signing import EventWebhookSigner
from reactivation.sandbox.state import Fault, SandboxSettings, SandboxState

log = logging.getLogger("reactivation.sandbox")

Handler = Callable[[Request], Awaitable[Response]]
ConnectionDropper = Callable[[Scope], bool]


class Sandbox:
    """Store, signer, webhook dispatcher and lifecycle driver of one sandbox server."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        signer: EventWebhookSigner | None = None,
    ) -> None:
        self.state = SandboxState(settings)
        self.signer = signer or EventWebhookSigner.generate()
        self.dispatcher = WebhookDispatcher(self.state)
        self.events = ProviderEvents(self.state, self.signer, self.dispatcher)
        # Set while the server shuts down, so hanging requests give up at once.
        self.closing = threading.Event()
        # Installed by the server: closes the TCP connection of a request (see server.py).
        self.connection_dropper: ConnectionDropper | None = None

    def start(self) -> None:
        """Start the background worker that moves messages along and posts webhooks."""
        self.closing.clear()
        self.dispatcher.start()

    def stop(self) -> None:
        """Release hanging requests and stop the worker; undelivered webhooks are dropped."""
        self.closing.set()
        self.dispatcher.stop()

    def reset(self) -> None:
        """Forget everything a test did: scheduled work first, so nothing old is posted afterwards."""
        self.dispatcher.clear()
        self.state.reset()


class DroppedResponse(Response):
    """A "response" that sends nothing: the connection was closed instead."""

    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


async def drop_connection(sandbox: Sandbox, request: Request) -> Response:
    """Close the client's connection without sending a status line, then wait until the server notices."""
    sandbox.state.count("dropped_connections")
    dropper = sandbox.connection_dropper
    if dropper is None:
        # No server hook (e.g. another ASGI server): promise a body that never comes, so the server aborts.
        return _TruncatedResponse()
    # False means the client already hung up: there is nothing left to close.
    if dropper(request.scope):
        # The server marks the request disconnected once the close is processed; waiting for that
        # keeps it from sending its own 500 for a handler that returned without a response.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_until_disconnected(request), timeout=2.0)
    return DroppedResponse()


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _TruncatedResponse(Response):
    def __init__(self) -> None:
        super().__init__(status_code=599)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"1")]})
        raise ConnectionAbortedError("sandbox dropped the connection")


def json_response(payload: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with exactly this status and these headers (the providers' error shapes)."""
    return Response(json.dumps(payload), status_code=status, headers=headers, media_type="application/json")


def counted(sandbox: Sandbox, endpoint: str, handler: Handler) -> Handler:
    """Wrap a handler so the stats count its requests and its response codes ("dropped" for drops)."""

    async def wrapper(request: Request) -> Response:
        sandbox.state.count_request(endpoint)
        response = await handler(request)
        status: int | str = (
            "dropped" if isinstance(response, DroppedResponse | _TruncatedResponse) else response.status_code
        )
        sandbox.state.count_response(endpoint, status)
        return response

    return wrapper


FaultResponder = Callable[[Fault], Response]


async def apply_fault(
    sandbox: Sandbox, request: Request, fault: Fault, *, endpoint: str, error_response: FaultResponder
) -> Response | None:
    """Turn a taken fault into what the client sees; None means "carry on" (hang with then=accept)."""
    log.info("sandbox fault %s applied to %s (fault %d)", fault.mode, endpoint, fault.id)
    if fault.mode in ("429", "500", "503"):
        return error_response(fault)
    if fault.mode == "hang":
        # Read the request now: with then=accept it is processed after the client may have gone.
        with contextlib.suppress(ClientDisconnect):
            await request.body()
        deadline = time.monotonic() + fault.hang_seconds
        while time.monotonic() < deadline and not sandbox.closing.is_set():
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if fault.then == "accept" and not sandbox.closing.is_set():
            return None
        return await drop_connection(sandbox, request)
    # accept_then_drop is applied after acceptance by the provider handlers.
    return await drop_connection(sandbox, request)


Authenticator = Callable[[Request], "str | Response"]


def guard(sandbox: Sandbox, provider: str, authenticate: Authenticator, error_response: FaultResponder):
    """``before(request, endpoint, kind)`` for one provider's routes: the credential of an authenticated
    request, or what to answer instead (401 and the like from ``authenticate``, or an injected fault)."""

    async def before(request: Request, endpoint: str, kind: str) -> str | Response:
        credential = authenticate(request)
        if isinstance(credential, Response):
            return credential
        fault = sandbox.state.take_fault(provider, kind, "before")
        if fault is not None:
            response = await apply_fault(sandbox, request, fault, endpoint=endpoint, error_response=error_response)
            if response is not None:
                return response
        return credential

    return before


def bad_control_request(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
