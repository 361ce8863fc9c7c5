"""The webhook receiver as a Starlette ASGI app: SendGrid's signed Event Webhook and Twilio's callbacks.

Every request is authenticated before its payload is looked at, with the providers' own SDK code:
SendGrid's ECDSA signature over ``timestamp + body`` (``sendgrid.helpers.eventwebhook``) plus a
timestamp tolerance, so a captured post cannot be replayed later; Twilio's ``X-Twilio-Signature``
(``twilio.request_validator``) over the public URL the provider was given. Behind a proxy the URL
the app sees differs from the one Twilio signed, hence ``public_base_url``.

Answers: 200 (or 204) once the transaction is committed, so the provider stops retrying only when
the event is safe; 403 for a bad signature or a stale timestamp; 400 for a signed payload that is
not what the provider sends (nothing written); 413 for an oversized body; 503 when the warehouse
is down, so the provider retries later. Rejections are counted in ``ops.webhook_counters``.
"""

from __future__ import annotations

import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.eventwebhook.eventwebhook_header import EventWebhookHeader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from reactivation.warehouse import WarehouseUnavailable, connect
from reactivation.webhooks import handlers
from reactivation.webhooks.handlers import MalformedPayload

log = logging.getLogger(__name__)

SENDGRID_MAX_BODY = 16 * 1024 * 1024  # 10,000 events of ~1 KB with room to spare
TWILIO_MAX_BODY = 64 * 1024
TWILIO_MAX_FIELDS = 200
TWIML = "text/xml"


class SendGridVerifier:
    """Checks the Signed Event Webhook signature with the SDK's ``EventWebhook`` and the configured key."""

    def __init__(self, public_key: str) -> None:
        try:
            self._webhook = EventWebhook(public_key.strip())
        except (ValueError, TypeError):
            raise ValueError("the SendGrid webhook verification key is not a base64 DER public key") from None
        if not isinstance(self._webhook.public_key, ec.EllipticCurvePublicKey):
            raise ValueError("the SendGrid webhook verification key is not an elliptic-curve (ECDSA) key")

    def verify(self, body: bytes, signature: str, timestamp: str) -> bool:
        """True when ``signature`` signs ``timestamp + body``; any garbled input is simply not valid."""
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            # The SDK takes text; a signed non-UTF-8 body is checked on its bytes (and will be rejected as malformed).
            try:
                self._webhook.public_key.verify(  # type: ignore[union-attr]
                    binascii.a2b_base64(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
                )
                return True
            except (InvalidSignature, ValueError, binascii.Error):
                return False
        try:
            return bool(self._webhook.verify_signature(payload, signature, timestamp))
        except (InvalidSignature, ValueError, binascii.Error, TypeError):
            return False


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _plain(status: int, text: str) -> Response:
    return Response(text, status_code=status, media_type="text/plain")


def create_app(
    url: str,
    *,
    sendgrid_public_key: str,
    twilio_auth_token: str,
    public_base_url: str | None = None,
    timestamp_tolerance_s: int = 300,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """Build the receiver for the warehouse at ``url``.

    ``public_base_url`` is the scheme, host and any path prefix Twilio was given (for example
    ``https://hooks.example.org/reactivation``); without it the request's own URL is used, which is
    right only when nothing rewrites the host or path in between. ``clock`` exists for tests.
    """
    if not twilio_auth_token:
        raise ValueError("the Twilio auth token is empty: Twilio signatures cannot be checked without it")
    if timestamp_tolerance_s <= 0:
        raise ValueError("timestamp_tolerance_s must be positive")
    sendgrid = SendGridVerifier(sendgrid_public_key)
    twilio = RequestValidator(twilio_auth_token)
    base = public_base_url.rstrip("/") if public_base_url else None
    headers = EventWebhookHeader

    async def reject(request: Request, name: str, status: int, text: str) -> Response:
        log.warning("webhook %s rejected: %s", request.url.path, name)
        await run_in_threadpool(handlers.record_rejection, url, name)
        return _plain(status, text)

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Warehouse trouble becomes 503 (retry later); anything else 500 with only the error type logged."""

        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except (WarehouseUnavailable, psycopg.OperationalError) as err:
                log.warning("webhook %s: warehouse unavailable (%s)", request.url.path, type(err).__name__)
                return _plain(503, "warehouse unavailable, retry later")
            except Exception as err:  # never echo a payload or a database message (could hold PHI)
                log.error("webhook %s failed: %s", request.url.path, type(err).__name__)
                return _plain(500, "internal error")

        return wrapper

    async def sendgrid_events(request: Request) -> Response:
        body = await _read_body(request, SENDGRID_MAX_BODY)
        if body is None:
            return await reject(request, "malformed", 413, "body too large")
        signature = request.headers.get(headers.SIGNATURE)
        timestamp = request.headers.get(headers.TIMESTAMP)
        if not signature or not timestamp or not sendgrid.verify(body, signature, timestamp):
            return await reject(request, "bad_signature", 403, "bad signature")
        if not timestamp.isdigit() or abs(clock() - int(timestamp)) > timestamp_tolerance_s:
            return await reject(request, "stale_timestamp", 403, "stale timestamp")
        try:
            events = handlers.parse_sendgrid_events(body)
        except MalformedPayload as err:
            log.warning("sendgrid events rejected: %s", err)
            return await reject(request, "malformed", 400, str(err))
        outcome = await run_in_threadpool(handlers.handle_sendgrid_events, url, events)
        return JSONResponse(outcome.as_dict())

    async def twilio_params(request: Request) -> ImmutableMultiDict | Response:
        """The verified form parameters, or the rejection to answer with."""
        body = await _read_body(request, TWILIO_MAX_BODY)
        if body is None:
            return await reject(request, "malformed", 413, "body too large")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return await reject(request, "malformed", 400, "expected a form post (application/x-www-form-urlencoded)")
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=TWILIO_MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            return await reject(request, "malformed", 400, "the form is not valid UTF-8 or has too many fields")
        params = ImmutableMultiDict(pairs)
        signature = request.headers.get("x-twilio-signature")
        signed_url = str(request.url)
        if base is not None:
            query = request.url.query
            signed_url = base + request.url.path + (f"?{query}" if query else "")
        if not signature or not twilio.validate(signed_url, params, signature):
            return await reject(request, "bad_signature", 403, "bad signature")
        return params

    async def twilio_status(request: Request) -> Response:
        params = await twilio_params(request)
        if isinstance(params, Response):
            return params
        try:
            event = handlers.parse_twilio_status(params, request.query_params.get("outreach_key"))
        except MalformedPayload as err:
            log.warning("twilio status callback rejected: %s", err)
            return await reject(request, "malformed", 400, str(err))
        await run_in_threadpool(handlers.handle_twilio_status, url, event)
        return Response(status_code=204)

    async def twilio_inbound(request: Request) -> Response:
        params = await twilio_params(request)
        if isinstance(params, Response):
            return params
        try:
            message = handlers.parse_twilio_inbound(params)
        except MalformedPayload as err:
            log.warning("twilio inbound message rejected: %s", err)
            return await reject(request, "malformed", 400, str(err))
        outcome = await run_in_threadpool(handlers.handle_twilio_inbound, url, message, secret=twilio_auth_token)
        return Response(outcome.twiml, media_type=TWIML)

    def _ping() -> None:
        with connect(url, connect_timeout=5) as conn:
            conn.execute("select 1")

    async def healthz(request: Request) -> Response:
        await run_in_threadpool(_ping)
        return JSONResponse({"status": "ok"})

    async def metrics(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(handlers.read_counters, url))

    app = Starlette(
        routes=[
            Route("/sendgrid/events", guarded(sendgrid_events), methods=["POST"]),
            Route("/twilio/status", guarded(twilio_status), methods=["POST"]),
            Route("/twilio/inbound", guarded(twilio_inbound), methods=["POST"]),
            Route("/healthz", guarded(healthz), methods=["GET"]),
            Route("/metrics", guarded(metrics), methods=["GET"]),
        ]
    )
    app.state.warehouse_url = url
    return app
