"""Tell operations when the quality gate blocks sends: an Airflow notifier.

``QualityGateNotifier`` logs one count-only line and emails the operations address
(``REACTIVATION_OPS_EMAIL``) through SendGrid's v3 Mail Send API with the official
``sendgrid`` SDK. The endpoint is the provider sandbox by default:
``REACTIVATION_SENDGRID_HOST`` (a base URL) if set, else the ``sendgrid_default``
Airflow connection the outreach senders use. The email is best effort: a missing
or unreachable endpoint is logged and never fails the run, because the block
itself is already recorded in ``ops.gate_decisions`` and nothing is sent.

The message carries location ids, counts and the checks' plain-words reasons,
never a patient value. Use it directly (the gate stage does, with the decision in
hand) or as a task callback, e.g. ``on_failure_callback=QualityGateNotifier()`` on
the gate task, where it reads the run's decision from the warehouse.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger(__name__)

DEFAULT_OPS_EMAIL = "operations@practice.example"
DEFAULT_FROM_EMAIL = "quality-gate@practice.example"
SENDGRID_CONN_ID = "sendgrid_default"
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class _Endpoint:
    base_url: str
    api_key: str
    from_email: str


def _endpoint(conn_id: str) -> _Endpoint | None:
    host = os.environ.get("REACTIVATION_SENDGRID_HOST", "").strip()
    from_email = os.environ.get("REACTIVATION_GATE_FROM_EMAIL", DEFAULT_FROM_EMAIL)
    if host:
        base_url = host if "://" in host else f"http://{host}"
        return _Endpoint(base_url.rstrip("/"), os.environ.get("REACTIVATION_SENDGRID_API_KEY", "sandbox"), from_email)
    try:
        from reactivation.outreach.connections import provider_connection

        connection = provider_connection(conn_id)
    except Exception as err:  # not configured, malformed, or the outreach package is absent
        log.warning("quality gate email not sent: no SendGrid endpoint configured (%s)", type(err).__name__)
        return None
    return _Endpoint(
        connection.base_url,
        connection.secret.get_secret_value(),
        connection.extra.get("from_email", from_email),
    )


def compose(gate: dict, *, run_id: str) -> tuple[str, str]:
    """Subject and plain-text body for operations: what is blocked, why, what to do."""
    as_of = gate.get("as_of") or "?"
    reasons: dict = gate.get("reasons") or {}
    global_reasons = reasons.get("__global__") or []
    blocked_locations = [loc for loc in gate.get("blocked_locations", []) if loc != "__global__"]
    if gate.get("global_blocked"):
        scope = "every location"
    else:
        scope = f"{len(blocked_locations)} location(s): {', '.join(blocked_locations)}"
    lines = [
        f"The quality gate blocked tonight's outreach for {scope}.",
        f"Run: {run_id} (as of {as_of}). Nothing will be sent where it is blocked; batches there are marked blocked.",
        "",
    ]
    if global_reasons:
        lines += ["Blocked everywhere because:", *[f"  - {r}" for r in global_reasons], ""]
    for location in blocked_locations:
        lines += [f"Blocked at {location} because:", *[f"  - {r}" for r in reasons.get(location, [])], ""]
    if gate.get("warnings"):
        lines.append(f"Also {gate['warnings']} warning(s) were reported (they block nothing).")
    if gate.get("data_docs"):
        lines.append(f"Details (counts only) in Data Docs: {gate['data_docs']}")
    lines.append("Fix the extract or the model, then re-run the night; `reactivation check --as-of DATE` re-checks.")
    subject = f"[reactivation] quality gate blocked outreach for {scope.split(':')[0]} (as of {as_of})"
    return subject, "\n".join(lines) + "\n"


class QualityGateNotifier(BaseNotifier):
    """Log and email a quality-gate block (count-only; best-effort email through SendGrid)."""

    template_fields = ("ops_email",)

    def __init__(
        self,
        *,
        gate: dict | None = None,
        ops_email: str | None = None,
        sendgrid_conn_id: str = SENDGRID_CONN_ID,
    ) -> None:
        super().__init__()
        self.gate = gate
        self.ops_email = ops_email or os.environ.get("REACTIVATION_OPS_EMAIL", DEFAULT_OPS_EMAIL)
        self.sendgrid_conn_id = sendgrid_conn_id
        self.sent: bool | None = None  # whether the last email went out (for callers and tests)

    def notify(self, context) -> None:
        run_id = str(context.get("run_id") or getattr(context.get("dag_run"), "run_id", "") or "unknown run")
        gate = self.gate if self.gate is not None else _gate_from_warehouse(run_id)
        if not gate.get("blocked"):
            return
        blocked_locations = [loc for loc in gate.get("blocked_locations", []) if loc != "__global__"]
        reasons = gate.get("reasons") or {}
        log.warning(
            "quality gate blocked run %s: global=%s, %d location(s) blocked, %d reason(s); notifying operations",
            run_id,
            bool(gate.get("global_blocked")),
            len(blocked_locations),
            sum(len(v) for v in reasons.values()),
        )
        subject, body = compose(gate, run_id=run_id)
        self.sent = self._email(subject, body)

    def _email(self, subject: str, body: str) -> bool:
        endpoint = _endpoint(self.sendgrid_conn_id)
        if endpoint is None:
            return False
        try:
            from sendgrid import SendGridAPIClient
            from sendgrid.helpers.mail import Category, Mail

            client = SendGridAPIClient(api_key=endpoint.api_key, host=endpoint.base_url)
            client.client.timeout = TIMEOUT_SECONDS
            message = Mail(
                from_email=endpoint.from_email,
                to_emails=self.ops_email,
                subject=subject,
                plain_text_content=body,
            )
            message.category = [Category("reactivation"), Category("quality_gate")]
            response = client.send(message)
        except Exception as err:  # sandbox down, refused, timed out, or an HTTP error status
            log.warning("quality gate email not sent: %s", type(err).__name__)
            return False
        ok = 200 <= int(response.status_code) < 300
        log.info("quality gate email %s (HTTP %s)", "accepted" if ok else "refused", response.status_code)
        return ok


def _gate_from_warehouse(run_id: str) -> dict:
    """The decision recorded for a run, shaped like ``GateDecision.summary()`` (no decision: blocked)."""
    from reactivation.quality.gate import GLOBAL, blocked_scope
    from reactivation.settings import get_settings
    from reactivation.warehouse import warehouse_url

    with warehouse_url(get_settings(), stop_embedded=False) as url:
        global_blocked, per_location = blocked_scope(url, run_id)
    locations = sorted(loc for loc in per_location if loc != GLOBAL)
    return {
        "blocked": global_blocked or bool(locations),
        "global_blocked": global_blocked,
        "blocked_locations": locations,
        "reasons": per_location,
    }
