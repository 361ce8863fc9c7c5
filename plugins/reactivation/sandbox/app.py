"""The sandbox as one Starlette ASGI application: SendGrid v3, Twilio 2010-04-01 and the ``/_sandbox`` control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from reactivation.sandbox import control_api, sendgrid_api, twilio_api
from reactivation.sandbox.core import Sandbox, json_response


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods, answered in the shape of the API the client thought it was calling."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    path = request.url.path
    if path.startswith("/2010-04-01/"):
        if status == 405:
            return twilio_api.twilio_error(20004, "Method not allowed", 405)
        return twilio_api.twilio_error(20404, f"The requested resource {path} was not found", 404)
    if path.startswith("/v3/"):
        message = "Method Not Allowed" if status == 405 else "Not Found"
        return json_response({"errors": [{"field": None, "message": message, "help": None}]}, status)
    return JSONResponse({"error": "not found" if status == 404 else "method not allowed"}, status_code=status)


def create_app(sandbox: Sandbox | None = None) -> Starlette:
    """Build the ASGI app around ``sandbox`` (a fresh in-memory one by default)."""
    sandbox = sandbox or Sandbox()
    app = Starlette(
        routes=[*control_api.routes(sandbox), *sendgrid_api.routes(sandbox), *twilio_api.routes(sandbox)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.sandbox = sandbox
    return app
