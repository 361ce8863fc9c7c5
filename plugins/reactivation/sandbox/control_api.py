"""The sandbox's own control API under ``/_sandbox``: faults, assertions, settings and injected events.

Tests and the demo drive the sandbox through it; provider SDKs never call it. It has no
authentication: the sandbox is a development server and must not be exposed beyond the
machine or the Compose network.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reactivation.sandbox.core import Sandbox, bad_control_request, counted
from reactivation.sandbox.state import PROVIDERS, SandboxError

MAX_DRAIN_SECONDS = 120.0


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SandboxError("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise SandboxError("the body must be a JSON object")
    return body


def routes(sandbox: Sandbox) -> list[Route]:
    """The control endpoints, bound to one sandbox."""
    state = sandbox.state

    def guarded(handler: Any) -> Any:
        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except SandboxError as err:
                return bad_control_request(str(err))

        return wrapper

    async def add_fault(request: Request) -> Response:
        fault = state.add_fault(await _json_object(request))
        return JSONResponse({"fault": fault.as_dict()}, status_code=201)

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": state.list_faults()})

    async def clear_faults(request: Request) -> Response:
        return JSONResponse({"cleared": state.clear_faults()})

    async def messages(request: Request) -> Response:
        provider = request.query_params.get("provider")
        if provider is not None and provider not in PROVIDERS:
            raise SandboxError(f"provider must be one of {PROVIDERS}")
        return JSONResponse(state.messages_snapshot(provider))

    async def reset(request: Request) -> Response:
        sandbox.reset()
        return JSONResponse({"reset": True})

    async def stats(request: Request) -> Response:
        payload = state.stats()
        payload["webhooks"]["pending"] = sandbox.dispatcher.pending
        return JSONResponse(payload)

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.settings.public())

    async def set_config(request: Request) -> Response:
        return JSONResponse(state.update_settings(await _json_object(request)).public())

    async def public_key(request: Request) -> Response:
        return JSONResponse({"public_key": sandbox.signer.public_key_base64()})

    async def sendgrid_event(request: Request) -> Response:
        body = await _json_object(request)
        event_type, msg_id, reason = body.get("type"), body.get("msg_id"), body.get("reason")
        if not isinstance(event_type, str) or not isinstance(msg_id, str) or not msg_id:
            raise SandboxError('send {"type": "unsubscribe"|"spamreport"|"bounce"|..., "msg_id": "<sg_message_id>"}')
        if reason is not None and not isinstance(reason, str):
            raise SandboxError("reason must be a string")
        msg_ids = sandbox.events.inject_email_event(event_type, msg_id, reason)
        return JSONResponse({"type": event_type, "msg_ids": msg_ids}, status_code=202)

    async def twilio_inbound(request: Request) -> Response:
        body = await _json_object(request)
        message = sandbox.events.inbound_sms(
            from_=body.get("from"),  # type: ignore[arg-type]
            to=body.get("to"),  # type: ignore[arg-type]
            body=body.get("body"),  # type: ignore[arg-type]
            url=body.get("url"),
            account_sid=body.get("account_sid"),
            messaging_service_sid=body.get("messaging_service_sid"),
        )
        return JSONResponse({"sid": message.sid, "account_sid": message.account_sid}, status_code=202)

    async def twilio_status(request: Request) -> Response:
        body = await _json_object(request)
        sid, status = body.get("sid"), body.get("status")
        if not isinstance(sid, str) or not isinstance(status, str):
            raise SandboxError('send {"sid": "SM...", "status": "undelivered"|"failed"|..., "error_code": 30003}')
        return JSONResponse(sandbox.events.set_sms_status(sid, status, body.get("error_code")))

    async def drain(request: Request) -> Response:
        body = await _json_object(request)
        timeout = body.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 <= timeout <= MAX_DRAIN_SECONDS:
            raise SandboxError(f"timeout must be between 0 and {MAX_DRAIN_SECONDS:g} seconds")
        idle = await run_in_threadpool(sandbox.dispatcher.wait_idle, float(timeout))
        return JSONResponse({"idle": idle, "pending": sandbox.dispatcher.pending})

    async def webhooks(request: Request) -> Response:
        with state.lock:
            log = list(state.webhook_log)
        return JSONResponse({"webhooks": log})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    table: list[tuple[str, str, str, Any]] = [
        ("/_sandbox/faults", "POST", "control.faults_add", add_fault),
        ("/_sandbox/faults", "GET", "control.faults_list", list_faults),
        ("/_sandbox/faults", "DELETE", "control.faults_clear", clear_faults),
        ("/_sandbox/messages", "GET", "control.messages", messages),
        ("/_sandbox/reset", "POST", "control.reset", reset),
        ("/_sandbox/stats", "GET", "control.stats", stats),
        ("/_sandbox/config", "GET", "control.config_get", get_config),
        ("/_sandbox/config", "POST", "control.config_set", set_config),
        ("/_sandbox/sendgrid/public-key", "GET", "control.public_key", public_key),
        ("/_sandbox/sendgrid/event", "POST", "control.sendgrid_event", sendgrid_event),
        ("/_sandbox/twilio/inbound", "POST", "control.twilio_inbound", twilio_inbound),
        ("/_sandbox/twilio/status", "POST", "control.twilio_status", twilio_status),
        ("/_sandbox/drain", "POST", "control.drain", drain),
        ("/_sandbox/webhooks", "GET", "control.webhooks", webhooks),
        ("/_sandbox/health", "GET", "control.health", health),
    ]
    return [Route(path, counted(sandbox, name, guarded(fn)), methods=[method]) for path, method, name, fn in table]
