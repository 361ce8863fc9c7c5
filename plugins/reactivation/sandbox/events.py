"""What happens after a provider accepts a message: status changes over time and the signed webhooks about them.

SendGrid: every recipient gets a ``processed`` event at once and ``delivered`` (or ``dropped``
when the address is suppressed) after the delivery delay or at ``send_at``; events are posted as
Event Webhook batches to the configured events URL. Twilio: a message goes queued → sent →
delivered, each change posted as a status callback to the message's StatusCallback URL. The
control API adds bounces, unsubscribes, spam reports, failed deliveries and inbound replies.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from reactivation.sandbox.dispatch import WebhookDispatcher, WebhookPost
from reactivation.sandbox.formats import is_phone_number, new_sg_event_id, new_sms_sid, sms_segments
from reactivation.sandbox.signing import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    EventWebhookSigner,
    twilio_signature,
)
from reactivation.sandbox.state import (
    TWILIO_API_VERSION,
    EmailMessage,
    MailSendRequest,
    SandboxError,
    SandboxState,
    SmsMessage,
)

# The number a Messaging Service "picks" when a message was sent with MessagingServiceSid only.
SERVICE_SENDER_NUMBER = "+15005550006"

# Twilio's default opt-out handling (Advanced Opt-Out keywords, matched on the whole trimmed body).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})

# Injectable SendGrid events: (suppression reason or None, new status or None, extra fields).
SENDGRID_INJECTABLE: dict[str, tuple[str | None, str | None, dict[str, Any]]] = {
    "bounce": (
        "Bounced Address",
        "not_delivered",
        {
            "type": "bounce",
            "reason": "550 5.1.1 The email account that you tried to reach does not exist.",
            "status": "5.1.1",
            "bounce_classification": "Invalid Address",
        },
    ),
    "blocked": (
        None,
        "not_delivered",
        {"type": "blocked", "reason": "550 5.7.1 Message rejected by policy", "status": "5.7.1"},
    ),
    "dropped": (None, "not_delivered", {"reason": "Bounced Address", "status": "5.0.0"}),
    "deferred": (None, None, {"response": "400 try again later", "attempt": "1"}),
    "spamreport": ("Spam Reporting Address", None, {}),
    "unsubscribe": ("Unsubscribed Address", None, {}),
    "group_unsubscribe": ("Unsubscribed Address", None, {}),
}

SMS_SETTABLE_STATUSES = ("sent", "delivered", "undelivered", "failed", "read")
SMS_DEFAULT_ERRORS = {"undelivered": (30003, "Unreachable destination handset"), "failed": (30008, "Unknown error")}


class ProviderEvents:
    """Drives message lifecycles and hands the resulting webhooks to the dispatcher."""

    def __init__(self, state: SandboxState, signer: EventWebhookSigner, dispatcher: WebhookDispatcher) -> None:
        self.state = state
        self.signer = signer
        self.dispatcher = dispatcher

    # SendGrid ---------------------------------------------------------------------------------

    def mail_accepted(self, request: MailSendRequest) -> None:
        """Schedule ``processed`` now and delivery later; the API response does not wait for either."""
        delay = self.state.settings.delivery_delay
        if request.send_at is not None:
            delay = max(delay, request.send_at - time.time())
        self.dispatcher.call_later(0.0, lambda: self._process_mail(request))
        self.dispatcher.call_later(delay, lambda: self._deliver_mail(request))

    def _email_event(self, message: EmailMessage, name: str, **extra: Any) -> dict[str, Any]:
        """Build one Event Webhook event (custom args flattened in, as SendGrid does) and record it."""
        timestamp = int(time.time())
        event: dict[str, Any] = dict(message.custom_args)
        event.update(
            {
                "email": message.to_email,
                "timestamp": timestamp,
                "smtp-id": f"<{message.x_message_id}@ismtpd-sandbox>",
                "event": name,
                "sg_event_id": new_sg_event_id(),
                "sg_message_id": message.msg_id,
            }
        )
        if message.categories:
            event["category"] = message.categories if len(message.categories) > 1 else message.categories[0]
        if message.asm_group_id is not None:
            event["asm_group_id"] = message.asm_group_id
        if message.template_id:
            event["template_id"] = message.template_id
        event.update(extra)
        message.events.append({k: event[k] for k in ("event", "timestamp", "reason", "type") if k in event})
        message.last_event_time = timestamp
        return event

    def _process_mail(self, request: MailSendRequest) -> None:
        with self.state.lock:
            messages = [self.state.emails[m] for m in request.msg_ids if m in self.state.emails]
            events = [self._email_event(m, "processed") for m in messages]
        self._post_sendgrid(events)

    def _deliver_mail(self, request: MailSendRequest) -> None:
        events = []
        with self.state.lock:
            for msg_id in request.msg_ids:
                message = self.state.emails.get(msg_id)
                if message is None or message.status != "processed":
                    continue
                reason = self.state.email_suppression(message)
                if reason is not None:
                    message.status = "not_delivered"
                    events.append(self._email_event(message, "dropped", reason=reason, status="5.0.0"))
                else:
                    message.status = "delivered"
                    events.append(self._email_event(message, "delivered", response="250 OK", ip="127.0.0.1", tls=1))
        self._post_sendgrid(events)

    def inject_email_event(self, event_type: str, msg_id: str, reason: str | None = None) -> list[str]:
        """Emit ``event_type`` for a message (sg_message_id) or every recipient of a request (X-Message-Id)."""
        if event_type not in SENDGRID_INJECTABLE:
            raise SandboxError(f"type must be one of {sorted(SENDGRID_INJECTABLE)}")
        messages = self.state.emails_matching_id(msg_id)
        if not messages:
            raise SandboxError("no accepted message has that msg_id (an sg_message_id or an X-Message-Id)")
        suppression, new_status, extra = SENDGRID_INJECTABLE[event_type]
        extra = {**extra, **({"reason": reason} if reason else {})}
        events = []
        with self.state.lock:
            for message in messages:
                if event_type == "group_unsubscribe" and message.asm_group_id is None:
                    raise SandboxError("group_unsubscribe needs a message sent with asm.group_id")
                if suppression is not None:
                    group = message.asm_group_id if event_type == "group_unsubscribe" else None
                    self.state.suppress_email(message.to_email, suppression, group)
                if new_status is not None:
                    message.status = new_status
                events.append(self._email_event(message, event_type, **extra))
        self._post_sendgrid(events)
        return [m.msg_id for m in messages]

    def _sign_sendgrid(self, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        return {SENDGRID_TIMESTAMP_HEADER: timestamp, SENDGRID_SIGNATURE_HEADER: self.signer.sign(timestamp, body)}

    def _post_sendgrid(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        settings = self.state.settings
        if not settings.events_url:
            self.state.count("webhook.sendgrid_events.skipped_no_url")
            return
        size = settings.webhook_batch_size
        for start in range(0, len(events), size):
            batch = events[start : start + size]
            self.dispatcher.post(
                WebhookPost(
                    kind="sendgrid_events",
                    url=settings.events_url,
                    body=json.dumps(batch, separators=(",", ":")).encode("utf-8"),
                    headers={"Content-Type": "application/json", "User-Agent": "SendGrid Event API"},
                    message_ids=tuple(dict.fromkeys(e["sg_message_id"] for e in batch)),
                    sign=self._sign_sendgrid,
                    events=len(batch),
                )
            )

    # Twilio -----------------------------------------------------------------------------------

    def sms_created(self, message: SmsMessage) -> None:
        """Schedule the carrier's progress: sent at once, delivered after the delivery delay."""
        sid = message.sid
        self.dispatcher.call_later(0.0, lambda: self._sms_transition(sid, "sent"))
        self.dispatcher.call_later(self.state.settings.delivery_delay, lambda: self._sms_transition(sid, "delivered"))

    def _sms_transition(self, sid: str, status: str) -> None:
        with self.state.lock:
            message = self.state.sms.get(sid)
            if message is None:
                return
            if status == "sent" and message.status not in ("queued", "accepted", "sending"):
                return
            if status == "delivered" and message.status != "sent":
                return
            self._apply_sms_status(message, status, None)
        self._post_status_callback(message)

    def _apply_sms_status(self, message: SmsMessage, status: str, error_code: int | None) -> None:
        now = time.time()
        message.status = status
        message.date_updated = now
        if status in ("sent", "delivered", "undelivered", "read") and message.date_sent is None:
            message.date_sent = now
        if message.from_ is None and status != "failed":
            message.from_ = SERVICE_SENDER_NUMBER
        if status in SMS_DEFAULT_ERRORS:
            code, text = SMS_DEFAULT_ERRORS[status]
            message.error_code = error_code or code
            message.error_message = text if message.error_code == code else "Delivery failed"

    def set_sms_status(self, sid: str, status: str, error_code: int | None = None) -> dict[str, Any]:
        """Force an outbound message to a status (e.g. undelivered with 30003) and post its callback."""
        if status not in SMS_SETTABLE_STATUSES:
            raise SandboxError(f"status must be one of {SMS_SETTABLE_STATUSES}")
        if error_code is not None and (isinstance(error_code, bool) or not isinstance(error_code, int)):
            raise SandboxError("error_code must be an integer Twilio error code")
        with self.state.lock:
            message = self.state.sms.get(sid)
            if message is None or message.direction == "inbound":
                raise SandboxError("no outbound message has that sid")
            self._apply_sms_status(message, status, error_code)
            resource = message.resource()
        self._post_status_callback(message)
        return resource

    def _post_status_callback(self, message: SmsMessage) -> None:
        with self.state.lock:
            url = message.status_callback or self.state.settings.twilio_status_callback_url
            params = {
                "SmsSid": message.sid,
                "SmsStatus": message.status,
                "MessageStatus": message.status,
                "To": message.to,
                "MessageSid": message.sid,
                "AccountSid": message.account_sid,
                "From": message.from_ or "",
                "ApiVersion": TWILIO_API_VERSION,
            }
            if message.messaging_service_sid:
                params["MessagingServiceSid"] = message.messaging_service_sid
            if message.error_code is not None and message.status in ("undelivered", "failed"):
                params["ErrorCode"] = str(message.error_code)
            if message.status == "delivered":
                params["RawDlrDoneDate"] = time.strftime("%y%m%d%H%M", time.gmtime())
            token = self.state.twilio_token(message.account_sid) or message.auth_token
        if not url:
            self.state.count("webhook.twilio_status.skipped_no_url")
            return
        self._post_twilio("twilio_status", url, params, token, message.sid)

    def inbound_sms(
        self,
        *,
        from_: str,
        to: str,
        body: str,
        url: str | None,
        account_sid: str | None = None,
        messaging_service_sid: str | None = None,
    ) -> SmsMessage:
        """Record a reply from a handset and post Twilio's signed incoming-message webhook about it."""
        for name, number in (("from", from_), ("to", to)):
            if not isinstance(number, str) or not is_phone_number(number):
                raise SandboxError(f"{name} must be an E.164 phone number like +15005550006")
        if not isinstance(body, str) or len(body) > 1600:
            raise SandboxError("body must be a string of at most 1600 characters")
        account_sid = account_sid or self.state.default_twilio_account()
        if not account_sid:
            raise SandboxError("say which account receives the reply: account_sid")
        token = self.state.twilio_token(account_sid)
        if not token:
            raise SandboxError(
                "no auth token known for that account: configure twilio_accounts or send a message with the SDK first"
            )
        url = url or self.state.settings.twilio_inbound_url
        if not url:
            raise SandboxError("say where to post the reply: url (or configure twilio_inbound_url)")
        now = time.time()
        message = SmsMessage(
            sid=new_sms_sid(),
            account_sid=account_sid,
            to=to,
            from_=from_,
            body=body,
            messaging_service_sid=messaging_service_sid,
            status="received",
            direction="inbound",
            date_created=now,
            date_updated=now,
            date_sent=now,
            num_segments=sms_segments(body),
        )
        keyword = " ".join(body.split()).upper()
        opt_out_type = None
        if keyword in OPT_OUT_KEYWORDS:
            opt_out_type = "STOP"
            self.state.set_opt_out(account_sid, from_, True)
        elif keyword in OPT_IN_KEYWORDS:
            opt_out_type = "START"
            self.state.set_opt_out(account_sid, from_, False)
        elif keyword in HELP_KEYWORDS:
            opt_out_type = "HELP"
        self.state.add_sms(message)
        country = "US" if from_.startswith("+1") else ""
        params = {
            "ToCountry": "US" if to.startswith("+1") else "",
            "ToState": "",
            "SmsMessageSid": message.sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": message.sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": country,
            "To": to,
            "ToZip": "",
            "NumSegments": str(message.num_segments),
            "MessageSid": message.sid,
            "AccountSid": account_sid,
            "From": from_,
            "ApiVersion": TWILIO_API_VERSION,
        }
        if messaging_service_sid:
            params["MessagingServiceSid"] = messaging_service_sid
        if opt_out_type:
            params["OptOutType"] = opt_out_type
        self._post_twilio("twilio_inbound", url, params, token, message.sid)
        return message

    def _post_twilio(self, kind: str, url: str, params: dict[str, str], token: str | None, sid: str) -> None:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if token:
            headers[TWILIO_SIGNATURE_HEADER] = twilio_signature(token, url, params)
        self.dispatcher.post(
            WebhookPost(kind=kind, url=url, body=urlencode(params).encode("ascii"), headers=headers, message_ids=(sid,))
        )
