"""The webhook receiver on a real warehouse: signed SendGrid events, Twilio callbacks and replies.

Payloads are signed exactly as the provider sandbox signs them (its own signing helpers), and
also with the wrong key. The last tests run the real sandbox server and the receiver on real
ports: the pipeline's providers send, the sandbox posts its signed webhooks, the warehouse changes.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from outreach_fixtures import Person, build_warehouse

from reactivation.sandbox.signing import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    EventWebhookSigner,
    twilio_signature,
)
from reactivation.webhooks import keywords
from reactivation.webhooks.app import create_app
from reactivation.webhooks.schema import WEBHOOK_DDL, ensure_webhook_schema

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
SIGNER = EventWebhookSigner.generate()
WRONG_SIGNER = EventWebhookSigner.generate()
TOKEN = "webhook-test-auth-token"
ACCOUNT_SID = "AC" + "5b" * 16
CLINIC_NUMBER = "+15005550006"

P1_PHONE, P2_PHONE, SHARED_PHONE, UNKNOWN_PHONE = "+14025551001", "+14025551002", "+14025551003", "+14025559999"
PEOPLE = [
    Person("p1", location_id="loc_a", phone=P1_PHONE, email="p1.patient@example.org"),
    Person("p2", location_id="loc_b", phone=P2_PHONE, email="p2.patient@example.org", language="es"),
    Person("p3", location_id="loc_a", phone=SHARED_PHONE, email="p3.patient@example.org"),
    Person("p4", location_id="loc_a", phone=SHARED_PHONE, email="p4.patient@example.org"),
]
SMS_SID_P1 = "SM" + "a1" * 16


def sid(n: int) -> str:
    return f"SM{n:032x}"


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


def add_outbox(
    url: str,
    outreach_key: str,
    person_id: str,
    channel: str,
    *,
    location_id: str = "loc_a",
    provider_message_id: str | None = None,
) -> None:
    """One accepted outbox row (with its batch and episode), as the send path leaves it."""
    batch_id = f"2026-11-02:{location_id}:{channel}"
    with psycopg.connect(url) as conn:
        conn.execute(
            """insert into ops.batches (batch_id, dag_run_id, as_of, location_id, channel, status, items, manifest)
               values (%s, 'run', '2026-11-02', %s, %s, 'sent', 1, '{}') on conflict do nothing""",
            (batch_id, location_id, channel),
        )
        conn.execute(
            """insert into ops.episodes (episode_id, person_id, rule_id, location_id, cadence_id, started_on, status)
               values (%s, %s, 'dormant', %s, 'standard', '2026-11-02', 'active') on conflict do nothing""",
            (f"ep-{person_id}", person_id, location_id),
        )
        conn.execute(
            """insert into ops.outbox (outreach_key, batch_id, episode_id, touch_number, person_id, rule_id,
                   location_id, channel, language, state, provider, provider_message_id)
               values (%s, %s, %s, 1, %s, 'dormant', %s, %s, 'en', 'accepted', %s, %s)""",
            (outreach_key, batch_id, f"ep-{person_id}", person_id, location_id, channel,
             "sendgrid" if channel == "email" else "twilio", provider_message_id),
        )  # fmt: skip


class ReceiverServer:
    """The receiver behind uvicorn in a background thread, on a port the OS picks."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> ReceiverServer:
        self._thread.start()
        _eventually(lambda: self._server.started, timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def client(self) -> httpx.Client:
        """An HTTP client for this server with a hard timeout on every request."""
        return httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)


@pytest.fixture
def wh(warehouse: str) -> str:
    """Persons, practices and outbox rows the webhooks refer to, plus the webhook tables."""
    build_warehouse(warehouse, PEOPLE)
    ensure_webhook_schema(warehouse)
    add_outbox(warehouse, "k-email-p1", "p1", "email")
    add_outbox(warehouse, "k-email-p2", "p2", "email", location_id="loc_b")
    add_outbox(warehouse, "k-sms-p1", "p1", "sms", provider_message_id=SMS_SID_P1)
    add_outbox(warehouse, "k-sms-p4", "p4", "sms", provider_message_id=sid(4))
    return warehouse


def serve(url: str, public_base_url: str | None = None) -> ReceiverServer:
    app = create_app(
        url, sendgrid_public_key=SIGNER.public_key_base64(), twilio_auth_token=TOKEN, public_base_url=public_base_url
    )
    return ReceiverServer(app)


@pytest.fixture
def client(wh: str) -> Iterator[httpx.Client]:
    """A client of the receiver running behind uvicorn on a real port."""
    with serve(wh) as server, server.client() as http:
        yield http


def q(url: str, sql: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def counters(url: str) -> dict[str, int]:
    return dict(q(url, "select name, value from ops.webhook_counters"))  # type: ignore[arg-type]


def table_counts(url: str) -> dict[str, int]:
    tables = ("provider_events", "message_status", "inbound_messages", "staff_queue", "opt_outs")
    return {t: q(url, f"select count(*) from ops.{t}")[0][0] for t in tables}


_event_numbers = iter(range(1, 10**9))


def sg_event(event: str, outreach_id: str | None, *, timestamp: int | None = None, **extra: Any) -> dict[str, Any]:
    """An Event Webhook event shaped like the sandbox's (custom args flattened in)."""
    body: dict[str, Any] = {
        "email": "p1.patient@example.org",
        "timestamp": timestamp or int(time.time()),
        "smtp-id": "<x@ismtpd-sandbox>",
        "event": event,
        "sg_event_id": f"evt-{next(_event_numbers)}",
        "sg_message_id": f"msg-{outreach_id}.recvd-sandbox-0-0.0",
        "category": ["reactivation", "dormant"],
        "asm_group_id": 42,
    }
    if outreach_id is not None:
        body["outreach_id"] = outreach_id
    body.update(extra)
    return body


def post_sendgrid(
    client: httpx.Client,
    events: list[dict[str, Any]] | None = None,
    *,
    body: bytes | None = None,
    signer: EventWebhookSigner = SIGNER,
    timestamp: int | None = None,
) -> httpx.Response:
    raw = body if body is not None else json.dumps(events, separators=(",", ":")).encode()
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    headers = {
        "Content-Type": "application/json",
        SENDGRID_TIMESTAMP_HEADER: stamp,
        SENDGRID_SIGNATURE_HEADER: signer.sign(stamp, raw),
    }
    return client.post("/sendgrid/events", content=raw, headers=headers)


def base(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def post_twilio(
    client: httpx.Client, path: str, params: dict[str, str], *, token: str = TOKEN, signed_url: str | None = None
) -> httpx.Response:
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        TWILIO_SIGNATURE_HEADER: twilio_signature(token, signed_url or base(client) + path, params),
    }
    return client.post(path, content=urlencode(params).encode(), headers=headers)


def status_params(message_sid: str, status: str, **extra: str) -> dict[str, str]:
    """A status callback's form fields as the sandbox posts them."""
    return {
        "SmsSid": message_sid,
        "SmsStatus": status,
        "MessageStatus": status,
        "To": P1_PHONE,
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": CLINIC_NUMBER,
        "ApiVersion": "2010-04-01",
        **extra,
    }


def inbound_params(message_sid: str, sender: str, body: str) -> dict[str, str]:
    """An incoming-message webhook's form fields as the sandbox posts them."""
    return {
        "ToCountry": "US",
        "SmsMessageSid": message_sid,
        "NumMedia": "0",
        "SmsSid": message_sid,
        "SmsStatus": "received",
        "Body": body,
        "FromCountry": "US",
        "To": CLINIC_NUMBER,
        "NumSegments": "1",
        "MessageSid": message_sid,
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


_inbound_numbers = iter(range(1000, 10**9))


def reply(client: httpx.Client, sender: str, body: str, message_sid: str | None = None) -> str | None:
    """Post an inbound SMS; returns the text of the TwiML <Message>, or None for an empty <Response/>."""
    response = post_twilio(
        client, "/twilio/inbound", inbound_params(message_sid or sid(next(_inbound_numbers)), sender, body)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    messages = root.findall("Message")
    assert len(messages) <= 1
    return messages[0].text if messages else None


def latest_opt(url: str, person_id: str, channel: str) -> str | None:
    rows = q(
        url,
        "select status from ops.opt_outs where person_id = %s and channel = %s order by recorded_at desc limit 1",
        person_id,
        channel,
    )
    return rows[0][0] if rows else None


# ---------------------------------------------------------------------------------------------
# keywords (pure)
# ---------------------------------------------------------------------------------------------

STOP_VARIANTS = [
    "STOP", "stop", "Stop", "Stop.", " STOP!!", "stop!", "STOPALL", "stop all", "Unsubscribe", "unsubscribe.",
    "CANCEL", "cancel", "End", "END.", "quit", "QUIT!", "revoke", "opt out", "opt-out", "Opt Out", "OPTOUT",
    "no más", "NO MAS", "No Más!", "no mas", "¡No más!", "  stop  ", "stop?", "\tStop\n",
    "ｓｔｏｐ", "Stop 🛑", "\"STOP\"", "Alto", "baja",
]  # fmt: skip
STOP_IN_SENTENCE = [
    "please stop texting me",
    "Unsubscribe please",
    "STOP texting this number",
    "Please, stop!",
    "I want to opt out",
    "no más mensajes por favor",
    "don't text me again",
    "Don’t text me",
    "do not contact me",
    "remove me from your list",
    "stop it",
]
OTHER_REPLIES = [
    "",
    "   ",
    "yes",
    "Yes please",
    "ok",
    "Can I cancel my 3pm appointment?",
    "Is the office open until the end of the day?",
    "I quit smoking!",
    "Help me book please",
    "When does my appointment start?",
    "stopped by yesterday",
    "no",
    "Thanks",
    "unstoppable",
    "!!!",
]


@pytest.mark.parametrize("text", STOP_VARIANTS)
def test_keyword_stop_variants_are_stop_as_a_whole_message(text: str) -> None:
    assert keywords.classify(text) == keywords.Classification("stop", "exact")


@pytest.mark.parametrize("text", STOP_IN_SENTENCE)
def test_stop_inside_a_sentence_also_stops(text: str) -> None:
    assert keywords.classify(text).keyword == "stop"


@pytest.mark.parametrize("text", ["START", "start", "Start.", " START!", "unstop", "Opt in", "subscribe"])
def test_keyword_start(text: str) -> None:
    assert keywords.classify(text) == keywords.Classification("start", "exact")


@pytest.mark.parametrize("text", ["HELP", "help", "Help?", "info", "INFO.", "Ayuda"])
def test_keyword_help(text: str) -> None:
    assert keywords.classify(text) == keywords.Classification("help", "exact")


@pytest.mark.parametrize("text", OTHER_REPLIES)
def test_everything_else_goes_to_staff(text: str) -> None:
    assert keywords.classify(text) == keywords.Classification("other")


def test_stop_wins_over_start_in_one_message_and_none_is_other() -> None:
    assert keywords.classify("stop start").keyword == "stop"
    assert keywords.classify(None).keyword == "other"
    assert keywords.normalise("  ¡No   MÁS!! ") == "no mas"


# ---------------------------------------------------------------------------------------------
# schema
# ---------------------------------------------------------------------------------------------


def test_schema_is_idempotent_and_the_event_log_is_append_only(wh: str) -> None:
    ensure_webhook_schema(wh)
    with psycopg.connect(wh) as conn:
        for statement in WEBHOOK_DDL:
            conn.execute(statement)
        conn.execute(
            "insert into ops.provider_events (event_id, provider, event_type, payload_digest) "
            "values ('e1', 'sendgrid', 'processed', 'd')"
        )
    for statement in ("update ops.provider_events set event_type = 'x'", "delete from ops.provider_events"):
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"), psycopg.connect(wh) as conn:
            conn.execute(statement)
    assert q(wh, "select event_type from ops.provider_events") == [("processed",)]


# ---------------------------------------------------------------------------------------------
# SendGrid Event Webhook
# ---------------------------------------------------------------------------------------------


def test_valid_sendgrid_batch_is_written_once(client: httpx.Client, wh: str) -> None:
    events = [
        sg_event("processed", "k-email-p1"),
        sg_event("processed", "k-email-p2"),
        sg_event("delivered", "k-email-p1"),
        sg_event("delivered", "k-email-p2"),
    ]
    response = post_sendgrid(client, events)
    assert response.status_code == 200
    assert response.json() == {"accepted": 4, "duplicate": 0, "unknown_message": 0, "opted_out": 0}
    rows = q(wh, "select event_id, provider, event_type, outreach_key from ops.provider_events order by id")
    assert sorted(rows) == sorted((e["sg_event_id"], "sendgrid", e["event"], e["outreach_id"]) for e in events)
    assert q(wh, "select outreach_key, status, status_rank from ops.message_status order by 1") == [
        ("k-email-p1", "delivered", 3),
        ("k-email-p2", "delivered", 3),
    ]
    occurred = q(wh, "select extract(epoch from occurred_at)::bigint from ops.provider_events limit 1")[0][0]
    assert occurred == events[0]["timestamp"]
    assert counters(wh)["accepted"] == 4


def test_the_same_batch_again_counts_duplicates_and_writes_nothing(client: httpx.Client, wh: str) -> None:
    events = [sg_event("processed", "k-email-p1"), sg_event("delivered", "k-email-p1")]
    body = json.dumps(events).encode()
    assert post_sendgrid(client, body=body).status_code == 200
    before = table_counts(wh), q(wh, "select * from ops.message_status")

    again = post_sendgrid(client, body=body)  # a provider retry: same body, fresh signature
    replayed = post_sendgrid(client, body=body, timestamp=int(time.time()) - 60)  # a replay inside the tolerance

    assert again.json()["duplicate"] == 2 and replayed.json()["duplicate"] == 2
    assert again.json()["accepted"] == 0
    assert (table_counts(wh), q(wh, "select * from ops.message_status")) == before
    assert counters(wh)["accepted"] == 2 and counters(wh)["duplicate"] == 4


def test_duplicate_events_inside_one_batch_are_written_once(client: httpx.Client, wh: str) -> None:
    event = sg_event("delivered", "k-email-p1")
    response = post_sendgrid(client, [event, event])
    assert response.json()["accepted"] == 1 and response.json()["duplicate"] == 1
    assert table_counts(wh)["provider_events"] == 1


@pytest.mark.parametrize(
    "tamper",
    ["wrong_key", "other_body", "no_signature", "no_timestamp", "garbage_signature", "timestamp_changed"],
)
def test_bad_sendgrid_signature_is_rejected_and_counted(client: httpx.Client, wh: str, tamper: str) -> None:
    body = json.dumps([sg_event("delivered", "k-email-p1")]).encode()
    stamp = str(int(time.time()))
    headers = {SENDGRID_TIMESTAMP_HEADER: stamp, SENDGRID_SIGNATURE_HEADER: SIGNER.sign(stamp, body)}
    if tamper == "wrong_key":
        headers[SENDGRID_SIGNATURE_HEADER] = WRONG_SIGNER.sign(stamp, body)
    elif tamper == "other_body":
        headers[SENDGRID_SIGNATURE_HEADER] = SIGNER.sign(stamp, body.replace(b"delivered", b"processed"))
    elif tamper == "no_signature":
        del headers[SENDGRID_SIGNATURE_HEADER]
    elif tamper == "no_timestamp":
        del headers[SENDGRID_TIMESTAMP_HEADER]
    elif tamper == "garbage_signature":
        headers[SENDGRID_SIGNATURE_HEADER] = "not base64 at all!"
    else:
        headers[SENDGRID_TIMESTAMP_HEADER] = str(int(stamp) - 1)

    response = client.post("/sendgrid/events", content=body, headers=headers)

    assert response.status_code == 403
    assert table_counts(wh)["provider_events"] == 0
    assert counters(wh) == {"bad_signature": 1}


@pytest.mark.parametrize("offset", [-301, -86400, 301])
def test_stale_or_future_timestamp_is_rejected_and_counted(client: httpx.Client, wh: str, offset: int) -> None:
    response = post_sendgrid(client, [sg_event("delivered", "k-email-p1")], timestamp=int(time.time()) + offset)
    assert response.status_code == 403
    assert table_counts(wh)["provider_events"] == 0
    assert counters(wh) == {"stale_timestamp": 1}


def test_timestamp_inside_the_tolerance_is_accepted(client: httpx.Client, wh: str) -> None:
    assert post_sendgrid(client, [sg_event("open", "k-email-p1")], timestamp=int(time.time()) - 290).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b'{"event": "delivered"}',
        json.dumps([{"event": "delivered", "timestamp": 1760000000}]).encode(),  # no sg_event_id
        json.dumps([{"sg_event_id": "e", "timestamp": 1760000000}]).encode(),  # no event
        json.dumps([{"sg_event_id": "e", "event": "delivered", "timestamp": "yesterday"}]).encode(),
        json.dumps([{"sg_event_id": "e", "event": "delivered", "timestamp": 1760000000, "outreach_id": 7}]).encode(),
        json.dumps(["delivered"]).encode(),
        b"\xff\xfe[]",
    ],
    ids=["broken", "empty", "object", "no_id", "no_event", "bad_time", "bad_custom_arg", "not_objects", "not_utf8"],
)
def test_malformed_sendgrid_payload_is_a_400_and_writes_nothing(client: httpx.Client, wh: str, body: bytes) -> None:
    good = sg_event("delivered", "k-email-p1")
    if body.startswith(b"["):
        body = body[:-1] + b"," + json.dumps(good).encode() + b"]"  # one bad event spoils the whole batch
    response = post_sendgrid(client, body=body)
    assert response.status_code == 400
    assert table_counts(wh) == {
        "provider_events": 0, "message_status": 0, "inbound_messages": 0, "staff_queue": 0, "opt_outs": 0
    }  # fmt: skip
    assert counters(wh) == {"malformed": 1}


def test_status_only_moves_forward(client: httpx.Client, wh: str) -> None:
    def status() -> tuple:
        return q(wh, "select status, status_rank from ops.message_status where outreach_key = 'k-email-p1'")[0]

    post_sendgrid(client, [sg_event("delivered", "k-email-p1")])
    post_sendgrid(client, [sg_event("processed", "k-email-p1")])  # late
    post_sendgrid(client, [sg_event("deferred", "k-email-p1")])  # late
    assert status() == ("delivered", 3)
    post_sendgrid(client, [sg_event("click", "k-email-p1"), sg_event("open", "k-email-p1")])  # out of order in a batch
    assert status() == ("click", 5)
    post_sendgrid(client, [sg_event("bounce", "k-email-p1", status="5.1.1", reason="550 no such user p1@x.org")])
    post_sendgrid(client, [sg_event("open", "k-email-p1")])
    assert status() == ("bounce", 9)
    assert q(wh, "select error_code from ops.message_status")[0][0] == "5.1.1"
    assert table_counts(wh)["provider_events"] == 7, "every event is recorded, whatever it does to the status"


@pytest.mark.parametrize("event", ["unsubscribe", "group_unsubscribe", "spamreport"])
def test_email_unsubscribe_and_spam_report_opt_out_of_email(client: httpx.Client, wh: str, event: str) -> None:
    unsubscribe = sg_event(event, "k-email-p2")
    response = post_sendgrid(client, [sg_event("delivered", "k-email-p2"), unsubscribe])
    assert response.json()["opted_out"] == 1
    post_sendgrid(client, [unsubscribe])  # duplicate delivery
    post_sendgrid(client, [sg_event(event, "k-email-p2")])  # the person does it again
    assert q(wh, "select person_id, channel, status, source from ops.opt_outs") == [
        ("p2", "email", "opt_out", f"sendgrid_{event}")
    ]
    assert latest_opt(wh, "p2", "sms") is None, "only email"
    assert q(wh, "select status from ops.message_status where outreach_key = 'k-email-p2'") == [(event,)]
    assert counters(wh)["opt_out"] == 1


def test_events_for_unknown_messages_are_recorded_and_counted(client: httpx.Client, wh: str) -> None:
    response = post_sendgrid(client, [sg_event("delivered", "k-not-ours"), sg_event("unsubscribe", None)])
    assert response.status_code == 200 and response.json()["unknown_message"] == 2
    assert table_counts(wh)["provider_events"] == 2
    assert table_counts(wh)["message_status"] == 0 and table_counts(wh)["opt_outs"] == 0
    assert counters(wh)["unknown_message"] == 2


def test_no_address_is_stored(client: httpx.Client, wh: str) -> None:
    post_sendgrid(client, [sg_event("bounce", "k-email-p1", reason="550 unknown user p1.patient@example.org")])
    dump = json.dumps(
        q(wh, "select * from ops.provider_events") + q(wh, "select * from ops.message_status"), default=str
    )
    assert "example.org" not in dump and "p1.patient" not in dump


# ---------------------------------------------------------------------------------------------
# Twilio status callbacks
# ---------------------------------------------------------------------------------------------


def test_twilio_status_moves_forward_only(client: httpx.Client, wh: str) -> None:
    path = "/twilio/status?outreach_key=k-sms-p1"
    for status in ("queued", "sent", "delivered", "sent"):  # the last one is late
        assert post_twilio(client, path, status_params(SMS_SID_P1, status)).status_code == 204
    assert q(wh, "select outreach_key, provider_message_id, status, status_rank from ops.message_status") == [
        ("k-sms-p1", SMS_SID_P1, "delivered", 3)
    ]
    assert counters(wh) == {"accepted": 3, "duplicate": 1}, "the late 'sent' repeats the first 'sent' event"
    dump = json.dumps(q(wh, "select * from ops.provider_events"), default=str)
    assert P1_PHONE not in dump and CLINIC_NUMBER not in dump


def test_twilio_failure_is_terminal_and_keeps_its_error_code(client: httpx.Client, wh: str) -> None:
    post_twilio(client, "/twilio/status", status_params(sid(4), "sent"))  # no query: found by MessageSid
    post_twilio(client, "/twilio/status", status_params(sid(4), "undelivered", ErrorCode="30003"))
    post_twilio(client, "/twilio/status", status_params(sid(4), "delivered"))
    assert q(wh, "select outreach_key, status, status_rank, error_code from ops.message_status") == [
        ("k-sms-p4", "undelivered", 9, "30003")
    ]


def test_twilio_status_for_an_unknown_message_is_counted(client: httpx.Client, wh: str) -> None:
    assert post_twilio(client, "/twilio/status", status_params(sid(99), "delivered")).status_code == 204
    assert counters(wh) == {"accepted": 1, "unknown_message": 1}
    assert table_counts(wh)["message_status"] == 0


@pytest.mark.parametrize("path", ["/twilio/status?outreach_key=k-sms-p1", "/twilio/inbound"])
@pytest.mark.parametrize("tamper", ["wrong_token", "changed_param", "no_signature", "other_url"])
def test_bad_twilio_signature_is_403_and_counted(client: httpx.Client, wh: str, path: str, tamper: str) -> None:
    params = status_params(SMS_SID_P1, "delivered") if "status" in path else inbound_params(sid(5), P1_PHONE, "STOP")
    signature = twilio_signature(TOKEN, base(client) + path, params)
    if tamper == "wrong_token":
        signature = twilio_signature("another-token", base(client) + path, params)
    elif tamper == "changed_param":
        params = {**params, "MessageStatus": "failed", "Body": "START"}
    elif tamper == "other_url":
        signature = twilio_signature(TOKEN, base(client).replace("127.0.0.1", "localhost") + path, params)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if tamper != "no_signature":
        headers[TWILIO_SIGNATURE_HEADER] = signature
    response = client.post(path, content=urlencode(params).encode(), headers=headers)
    assert response.status_code == 403
    assert table_counts(wh) == {
        "provider_events": 0, "message_status": 0, "inbound_messages": 0, "staff_queue": 0, "opt_outs": 0
    }  # fmt: skip
    assert counters(wh) == {"bad_signature": 1}


def test_twilio_signature_is_checked_against_the_public_url(wh: str) -> None:
    """Behind a proxy Twilio signs the URL it was given, not the one the app sees."""
    public = "https://hooks.practice.example/reactivation"
    with serve(wh, public_base_url=public) as server, server.client() as client:
        path = "/twilio/status?outreach_key=k-sms-p1"
        params = status_params(SMS_SID_P1, "delivered")
        assert post_twilio(client, path, params, signed_url=public + path).status_code == 204
        assert post_twilio(client, path, params, signed_url=base(client) + path).status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"MessageStatus": "delivered"},
        {"MessageSid": "not-a-sid", "MessageStatus": "delivered"},
        {"MessageSid": SMS_SID_P1},
        {"MessageSid": SMS_SID_P1, "MessageStatus": "delivered", "ErrorCode": "abc"},
    ],
    ids=["no_sid", "bad_sid", "no_status", "bad_error_code"],
)
def test_malformed_twilio_status_is_400_and_writes_nothing(client: httpx.Client, wh: str, params: dict) -> None:
    assert post_twilio(client, "/twilio/status", params).status_code == 400
    assert table_counts(wh)["provider_events"] == 0
    assert counters(wh) == {"malformed": 1}


def test_malformed_inbound_and_non_form_posts_are_400(client: httpx.Client, wh: str) -> None:
    assert post_twilio(client, "/twilio/inbound", {"MessageSid": sid(6), "Body": "STOP"}).status_code == 400  # no From
    assert post_twilio(client, "/twilio/inbound", {"MessageSid": sid(6), "From": P1_PHONE}).status_code == 400
    response = client.post("/twilio/inbound", content=b'{"Body": "STOP"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert table_counts(wh)["inbound_messages"] == 0 and latest_opt(wh, "p1", "sms") is None
    assert counters(wh) == {"malformed": 3}


# ---------------------------------------------------------------------------------------------
# Twilio inbound replies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["STOP", "Stop.", " STOP!!", "stopall", "unsubscribe", "cancel", "end", "quit",
                                  "revoke", "opt-out", "no más", "NO MAS", "please stop texting me"])  # fmt: skip
def test_stop_variants_opt_out_of_sms_at_once_with_one_confirmation(client: httpx.Client, wh: str, text: str) -> None:
    answer = reply(client, P1_PHONE, text)

    assert answer is not None and "Riverside Dental" in answer and "START" in answer
    if keywords.normalise(text) == "no mas":
        assert "baja" in answer, "a Spanish STOP is confirmed in Spanish"
    assert q(wh, "select person_id, channel, status, source from ops.opt_outs") == [
        ("p1", "sms", "opt_out", "sms_stop")
    ]
    assert latest_opt(wh, "p1", "email") is None, "only the channel the reply came on"
    rows = q(wh, "select person_id, person_ids, location_id, keyword, reply from ops.inbound_messages")
    assert rows == [("p1", ["p1"], "loc_a", "stop", "stop_confirmation")]
    assert table_counts(wh)["staff_queue"] == 0, "keyword replies are not stored as text"
    assert counters(wh) == {"accepted": 1, "opt_out": 1}


def test_a_repeated_stop_gets_no_second_confirmation(client: httpx.Client, wh: str) -> None:
    assert reply(client, P1_PHONE, "STOP") is not None
    assert reply(client, P1_PHONE, "stop") is None
    assert reply(client, P1_PHONE, "Unsubscribe") is None
    assert q(wh, "select count(*) from ops.opt_outs")[0][0] == 1
    assert [r[0] for r in q(wh, "select reply from ops.inbound_messages order by id")] == [
        "stop_confirmation",
        "none",
        "none",
    ]
    # After a START, a new STOP is a new opt-out and is confirmed again.
    assert reply(client, P1_PHONE, "START") is not None
    assert reply(client, P1_PHONE, "STOP") is not None
    assert latest_opt(wh, "p1", "sms") == "opt_out"


def test_a_stop_older_than_a_day_is_confirmed_again(client: httpx.Client, wh: str) -> None:
    reply(client, P1_PHONE, "STOP")
    with psycopg.connect(wh) as conn:
        conn.execute("update ops.inbound_messages set received_at = received_at - interval '25 hours'")
    assert reply(client, P1_PHONE, "STOP") is not None


def test_the_same_inbound_delivered_twice_is_handled_once(client: httpx.Client, wh: str) -> None:
    message_sid = sid(7)
    assert reply(client, P1_PHONE, "STOP", message_sid) is not None
    assert reply(client, P1_PHONE, "STOP", message_sid) is None
    assert table_counts(wh)["inbound_messages"] == 1
    assert counters(wh)["duplicate"] == 1


def test_stop_from_a_shared_number_opts_out_everyone_on_it(client: httpx.Client, wh: str) -> None:
    answer = reply(client, SHARED_PHONE, "STOP")
    assert answer is not None and "Riverside Dental" in answer
    assert sorted(q(wh, "select person_id from ops.opt_outs where channel = 'sms' and status = 'opt_out'")) == [
        ("p3",),
        ("p4",),
    ]
    # p4 is the one we texted at that number: the reply is attributed to p4.
    assert q(wh, "select person_id, person_ids from ops.inbound_messages") == [("p4", ["p3", "p4"])]


def test_start_resubscribes(client: httpx.Client, wh: str) -> None:
    reply(client, P1_PHONE, "STOP")
    answer = reply(client, P1_PHONE, "Start")
    assert answer is not None and "resubscribed" in answer
    assert latest_opt(wh, "p1", "sms") == "opt_in"
    assert counters(wh)["opt_in"] == 1


def test_help_answers_with_the_practice_contact(client: httpx.Client, wh: str) -> None:
    answer = reply(client, P1_PHONE, "HELP")
    assert answer == "Riverside Dental: For help, call (402) 555-0100. Reply STOP to opt out."
    spanish = reply(client, P2_PHONE, "ayuda")
    assert spanish is not None and spanish.startswith("Northside Medical: Para ayuda") and "(212) 555-0100" in spanish
    generic = reply(client, UNKNOWN_PHONE, "help")
    assert generic == "For help, call the practice that sent you our message. Reply STOP to opt out."
    assert table_counts(wh)["opt_outs"] == 0 and table_counts(wh)["staff_queue"] == 0


def test_other_replies_go_to_the_staff_queue_with_their_text(client: httpx.Client, wh: str) -> None:
    assert reply(client, P1_PHONE, "Yes, can I come Tuesday at 3?") is None
    assert reply(client, UNKNOWN_PHONE, "who is this?") is None
    rows = q(wh, "select person_id, location_id, channel, body, handled_at from ops.staff_queue order by id")
    assert rows == [
        ("p1", "loc_a", "sms", "Yes, can I come Tuesday at 3?", None),
        (None, None, "sms", "who is this?", None),
    ]
    assert q(wh, "select keyword, reply from ops.inbound_messages order by id") == [("other", "none")] * 2
    assert table_counts(wh)["opt_outs"] == 0
    assert counters(wh) == {"accepted": 2, "staff_queued": 2, "unknown_sender": 1}


def test_stop_from_an_unknown_number_is_confirmed_and_counted(client: httpx.Client, wh: str) -> None:
    answer = reply(client, UNKNOWN_PHONE, "STOP")
    assert answer is not None and answer.startswith("You're unsubscribed")
    assert reply(client, UNKNOWN_PHONE, "STOP") is None, "repeats are recognised without storing the number"
    assert counters(wh)["unknown_sender"] == 2


def test_no_phone_or_keyword_text_is_stored_or_logged(
    client: httpx.Client, wh: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply(client, P1_PHONE, "please stop texting me")
    reply(client, P2_PHONE, "Call me back at 402-555-7777")
    post_twilio(client, "/twilio/status?outreach_key=k-sms-p1", status_params(SMS_SID_P1, "delivered"))
    post_sendgrid(client, [sg_event("delivered", "k-email-p1")])
    stored = json.dumps(
        [q(wh, f"select * from ops.{t}") for t in ("provider_events", "message_status", "inbound_messages")],
        default=str,
    )
    for secret in (P1_PHONE, P2_PHONE, P1_PHONE[2:], "texting", "402-555-7777", "example.org"):
        assert secret not in stored
        assert secret not in caplog.text
    assert q(wh, "select body from ops.staff_queue") == [("Call me back at 402-555-7777",)]


# ---------------------------------------------------------------------------------------------
# health, metrics, configuration, CLI
# ---------------------------------------------------------------------------------------------


def test_healthz_and_metrics(client: httpx.Client, wh: str) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    post_sendgrid(client, [sg_event("delivered", "k-email-p1")])
    post_sendgrid(client, [sg_event("delivered", "k-email-p1")], signer=WRONG_SIGNER)
    metrics = client.get("/metrics").json()
    assert metrics["accepted"] == 1 and metrics["bad_signature"] == 1 and metrics["stale_timestamp"] == 0
    assert set(metrics) >= {"accepted", "duplicate", "bad_signature", "stale_timestamp", "malformed", "unknown_message"}


def test_warehouse_down_is_503_so_the_provider_retries() -> None:
    with serve("postgresql://nobody@127.0.0.1:1/none") as server, server.client() as client:
        assert post_sendgrid(client, [sg_event("delivered", "k-email-p1")]).status_code == 503
        assert client.get("/healthz").status_code == 503


def test_bad_configuration_fails_at_start() -> None:
    with pytest.raises(ValueError, match="verification key"):
        create_app("postgresql://x/y", sendgrid_public_key="bm90IGEga2V5", twilio_auth_token=TOKEN)
    with pytest.raises(ValueError, match="auth token"):
        create_app("postgresql://x/y", sendgrid_public_key=SIGNER.public_key_base64(), twilio_auth_token="")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from reactivation.settings import SettingsError
    from reactivation.webhooks.server import receiver_settings

    for name in (
        "REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY",
        "REACTIVATION_TWILIO_AUTH_TOKEN",
        "REACTIVATION_WEBHOOK_PUBLIC_URL",
        "AIRFLOW_CONN_SMS_DEFAULT",
        "AIRFLOW_CONN_SENDGRID_DEFAULT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY", SIGNER.public_key_base64())
    with pytest.raises(SettingsError, match="REACTIVATION_TWILIO_AUTH_TOKEN"):
        receiver_settings()
    monkeypatch.setenv("AIRFLOW_CONN_SMS_DEFAULT", f"sms://{ACCOUNT_SID}:token-from-conn@sandbox:8025")
    settings = receiver_settings()
    assert settings.twilio_auth_token == "token-from-conn" and settings.public_base_url is None
    assert "token-from-conn" not in repr(settings)
    monkeypatch.setenv("REACTIVATION_TWILIO_AUTH_TOKEN", "token-from-env")
    monkeypatch.setenv("REACTIVATION_WEBHOOK_PUBLIC_URL", "https://hooks.example.org")
    settings = receiver_settings(tolerance_s=60)
    assert (settings.twilio_auth_token, settings.public_base_url, settings.timestamp_tolerance_s) == (
        "token-from-env",
        "https://hooks.example.org",
        60,
    )
    monkeypatch.delenv("REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY")
    monkeypatch.setenv("AIRFLOW_CONN_SENDGRID_DEFAULT", "sendgrid://:SG.key@api.sendgrid.com")
    with pytest.raises(SettingsError, match="REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        receiver_settings()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _health(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def test_cli_serves_until_sigterm(wh: str, tmp_path: Path) -> None:
    """``reactivation webhooks serve`` as Compose runs it: foreground, settings from the environment."""
    import argparse

    from reactivation.webhooks.server import add_subcommand

    parser = argparse.ArgumentParser(prog="reactivation")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["webhooks", "serve", "--host", "0.0.0.0", "--port", "8030"])
    assert (args.host, args.port, args.func.__name__) == ("0.0.0.0", 8030, "_cmd_serve")

    port = _free_port()
    script = (
        "import argparse, sys\n"
        "from reactivation.webhooks.server import add_subcommand\n"
        "parser = argparse.ArgumentParser()\n"
        "add_subcommand(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "plugins"),
        "REACTIVATION_STATE_DIR": str(tmp_path),
        "WAREHOUSE_URL": wh,
        "REACTIVATION_SENDGRID_WEBHOOK_PUBLIC_KEY": SIGNER.public_key_base64(),
        "REACTIVATION_TWILIO_AUTH_TOKEN": TOKEN,
    }
    command = [sys.executable, "-c", script, "webhooks", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _eventually(lambda: _health(port)) == {"status": "ok"}
        base = f"http://127.0.0.1:{port}"
        params = inbound_params(sid(8), P1_PHONE, "STOP")
        response = httpx.post(
            f"{base}/twilio/inbound",
            content=urlencode(params),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                TWILIO_SIGNATURE_HEADER: twilio_signature(TOKEN, f"{base}/twilio/inbound", params),
            },
            timeout=10,
        )
        assert response.status_code == 200 and "<Message>" in response.text
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0, stderr[-2000:]
    assert latest_opt(wh, "p1", "sms") == "opt_out"
    assert P1_PHONE not in stderr and P1_PHONE[2:] not in stderr


# ---------------------------------------------------------------------------------------------
# end to end: the real sandbox posts to the receiver on a real port
# ---------------------------------------------------------------------------------------------


def test_end_to_end_with_the_sandbox(wh: str) -> None:
    from pydantic import SecretStr

    from reactivation.outreach.connections import ProviderConnection
    from reactivation.outreach.providers.base import OutboundMessage
    from reactivation.outreach.providers.sendgrid_email import SendGridEmailProvider
    from reactivation.outreach.providers.twilio_sms import TwilioSmsProvider
    from reactivation.sandbox import SandboxControl, SandboxServer

    api_key = "SG.e2e-key"
    with SandboxServer(
        sendgrid_api_keys=[api_key],
        twilio_accounts={ACCOUNT_SID: TOKEN},
        delivery_delay=0.05,
        webhook_retry_backoff=0.05,
        webhook_copies=2,  # every webhook delivered twice: the receiver must dedupe
    ) as sandbox:
        app = create_app(
            wh,
            sendgrid_public_key=sandbox.sandbox.signer.public_key_base64(),
            twilio_auth_token=TOKEN,
            public_base_url=None,
        )
        with ReceiverServer(app) as receiver, SandboxControl(sandbox.url, timeout=10) as control:
            control.configure(
                events_url=f"{receiver.url}/sendgrid/events", twilio_inbound_url=f"{receiver.url}/twilio/inbound"
            )
            email = SendGridEmailProvider(
                ProviderConnection("sendgrid_default", sandbox.url, "", SecretStr(api_key), {"from_email": "c@x.org"})
            )
            sms = TwilioSmsProvider(
                ProviderConnection(
                    "sms_default",
                    sandbox.url,
                    ACCOUNT_SID,
                    SecretStr(TOKEN),
                    {"from_number": CLINIC_NUMBER, "status_callback": f"{receiver.url}/twilio/status"},
                )
            )
            add_outbox(wh, "k-e2e-email-p3", "p3", "email")
            add_outbox(wh, "k-e2e-sms-p2", "p2", "sms", location_id="loc_b")

            def message(key: str, channel: str, recipient: str) -> OutboundMessage:
                return OutboundMessage(key, channel, recipient, "en", "Hello", "Time to book.", "loc_a", "dormant")

            email_results = email.send(
                [message("k-email-p1", "email", "p1.patient@example.org"),
                 message("k-e2e-email-p3", "email", "p3.patient@example.org")]
            )  # fmt: skip
            [sms_result] = sms.send([message("k-e2e-sms-p2", "sms", P2_PHONE)])
            assert {r.status for r in email_results} == {"accepted"} and sms_result.status == "accepted"
            with psycopg.connect(wh) as conn:
                conn.execute(
                    "update ops.outbox set provider_message_id = %s where outreach_key = 'k-e2e-sms-p2'",
                    (sms_result.provider_message_id,),
                )
            assert control.drain(timeout=20)
            assert q(wh, "select outreach_key, status from ops.message_status order by 1") == [
                ("k-e2e-email-p3", "delivered"),
                ("k-e2e-sms-p2", "delivered"),
                ("k-email-p1", "delivered"),
            ]

            # The patient unsubscribes from the email; the other replies STOP by text, then asks for help.
            msg_id = next(
                m["msg_id"]
                for m in control.messages("sendgrid")["sendgrid"]
                if m["custom_args"].get("outreach_id") == "k-e2e-email-p3"
            )
            control.sendgrid_event("unsubscribe", msg_id)
            control.inbound_sms(P2_PHONE, CLINIC_NUMBER, "Stop!", account_sid=ACCOUNT_SID)
            control.inbound_sms(P2_PHONE, CLINIC_NUMBER, "Can I book for Friday?", account_sid=ACCOUNT_SID)
            control.sms_status(sms_result.provider_message_id, "sent")  # a late, out-of-order callback
            assert control.drain(timeout=20)
            webhooks = control.webhooks()

        assert all(w["ok"] for w in webhooks), [w for w in webhooks if not w["ok"]]
        assert latest_opt(wh, "p3", "email") == "opt_out" and latest_opt(wh, "p3", "sms") is None
        assert latest_opt(wh, "p2", "sms") == "opt_out" and latest_opt(wh, "p2", "email") is None
        assert q(wh, "select status from ops.message_status where outreach_key = 'k-e2e-sms-p2'") == [("delivered",)]
        assert q(wh, "select person_id, location_id, body from ops.staff_queue") == [
            ("p2", "loc_b", "Can I book for Friday?")
        ]
        assert q(wh, "select keyword, reply from ops.inbound_messages order by id") == [
            ("stop", "stop_confirmation"),
            ("other", "none"),
        ]
        totals = counters(wh)
        assert totals["duplicate"] >= totals["accepted"] > 0, "every webhook came twice and was recorded once"
        assert totals.get("bad_signature", 0) == 0 and totals.get("malformed", 0) == 0
        assert (
            q(wh, "select count(*) from ops.provider_events")[0][0]
            == q(wh, "select count(distinct event_id) from ops.provider_events")[0][0]
        )
