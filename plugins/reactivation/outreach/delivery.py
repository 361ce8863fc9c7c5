"""Wire one batch to its provider: connections, practice details, message reasons, then ``send_batch``."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from urllib.parse import urlsplit

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
CHANNEL_CONN_IDS = {"email": SENDGRID_CONN_ID, "sms": SMS_CONN_ID}


class SendClockRefused(RuntimeError):
    """REACTIVATION_SEND_CLOCK is set while a channel's connection leaves this machine."""


def _is_local(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def send_clock(channel: str) -> datetime | None:
    """The instant the send stage takes as now for ``channel``, or None for the wall clock.

    The setting exists for replays against the local sandbox. A message that reaches a real
    phone or inbox goes by the wall clock, so quiet hours are never judged on a made-up time:
    with the setting present and the channel's connection pointing anywhere but this machine,
    the send stage stops before it sends anything.
    """
    instant = get_settings().reactivation_send_clock
    if instant is None:
        return None
    conn_id = CHANNEL_CONN_IDS.get(channel)
    if conn_id is not None and not _is_local(provider_connection(conn_id).base_url):
        raise SendClockRefused(
            f"REACTIVATION_SEND_CLOCK is set but {conn_id} points beyond this machine: "
            "real messages go by the wall clock; unset REACTIVATION_SEND_CLOCK"
        )
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


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
    if "clock" not in overrides and (instant := send_clock(channel)) is not None:
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
