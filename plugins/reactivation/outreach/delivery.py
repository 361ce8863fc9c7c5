"""Wire one batch to its provider: connections, practice details, message reasons, then ``send_batch``."""

from __future__ import annotations

from datetime import UTC

from reactivation.outreach.config import load_config
from reactivation.outreach.connections import provider_connection
from reactivation.outreach.practice import message_reasons, practice_details
from reactivation.outreach.providers.base import Provider
from reactivation.outreach.providers.call_list import CallListProvider
from reactivation.outreach.sending import send_batch
from reactivation.settings import get_settings
from reactivation.warehouse import connect

SENDGRID_CONN_ID = "sendgrid_default"
SMS_CONN_ID = "sms_default"


def build_provider(url: str, channel: str, as_of) -> Provider:
    if channel == "email":
        from reactivation.outreach.providers.sendgrid_email import SendGridEmailProvider

        return SendGridEmailProvider(provider_connection(SENDGRID_CONN_ID))
    if channel == "sms":
        from reactivation.outreach.providers.twilio_sms import TwilioSmsProvider

        return TwilioSmsProvider(provider_connection(SMS_CONN_ID))
    return CallListProvider(url, as_of)


def send_one_batch(url: str, batch_id: str, **overrides) -> dict:
    with connect(url) as conn:
        row = conn.execute("select channel, as_of from ops.batches where batch_id = %s", (batch_id,)).fetchone()
        practices, reasons = practice_details(conn), message_reasons(conn)
    if row is None:
        return {"batch_id": batch_id, "skipped": "no such batch"}
    channel, as_of = row
    send_clock = get_settings().reactivation_send_clock
    if send_clock is not None and "clock" not in overrides:
        instant = send_clock if send_clock.tzinfo else send_clock.replace(tzinfo=UTC)
        overrides["clock"] = lambda: instant
    summary = send_batch(
        url,
        batch_id,
        providers={channel: overrides.pop("provider", None) or build_provider(url, channel, as_of)},
        config=load_config(),
        practices=practices,
        reasons=reasons,
        **overrides,
    )
    return summary.as_dict()
