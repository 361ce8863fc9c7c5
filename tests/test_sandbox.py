"""The provider sandbox, driven the way the pipeline drives SendGrid and Twilio: through the official SDKs.

One sandbox server per module on a free port (reset before each test), real HTTP everywhere, and
webhooks received by a small local HTTP server whose requests are checked with the SDKs' own
validators (``sendgrid.helpers.eventwebhook.EventWebhook``, ``twilio.request_validator``).
Every HTTP call has a client timeout and every test a hard pytest timeout.
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
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qsl

import httpx
import pytest
import requests
from python_http_client.exceptions import (
    BadRequestsError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import Asm, Category, CustomArg, From, Mail, Personalization, To
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from reactivation.sandbox import (
    SandboxControl,
    SandboxServer,
    add_subcommand,
    sendgrid_client,
    settings_from_environment,
    twilio_client,
)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
SENDGRID_KEY = "SG.sandbox-test-key"
ACCOUNT_SID = "AC" + "5a" * 16
AUTH_TOKEN = "sandbox-test-auth-token"
CLINIC_EMAIL = "reminders@clinic.example.org"
CLINIC_NUMBER = "+15005550006"
PATIENT_EMAIL = "pat.sandbox@example.com"
PATIENT_NUMBER = "+15558675309"
CLIENT_TIMEOUT = 5.0


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


class WebhookReceiver:
    """A tiny HTTP server recording every POST (path, headers, body) and answering ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self._condition = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._condition:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    receiver._condition.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(self.requests):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"webhooks not received in {timeout}s; got {len(self.requests)}")
                self._condition.wait(remaining)
            return list(self.requests)

    def on(self, path_prefix: str) -> list[dict[str, Any]]:
        with self._condition:
            return [r for r in self.requests if r["path"].startswith(path_prefix)]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def sandbox_server() -> Iterator[SandboxServer]:
    with SandboxServer(
        sendgrid_api_keys=[SENDGRID_KEY],
        twilio_accounts={ACCOUNT_SID: AUTH_TOKEN},
        delivery_delay=0.05,
        webhook_retry_backoff=0.05,
    ) as server:
        yield server


@pytest.fixture
def control(sandbox_server: SandboxServer) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox_server.url, timeout=CLIENT_TIMEOUT) as control:
        control.reset()
        yield control
        control.drain(timeout=5)


@pytest.fixture
def sg(sandbox_server: SandboxServer, control: SandboxControl) -> Any:
    return sendgrid_client(SENDGRID_KEY, sandbox_server.url, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def tw(sandbox_server: SandboxServer, control: SandboxControl) -> Client:
    return twilio_client(ACCOUNT_SID, AUTH_TOKEN, sandbox_server.url, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def reminder(outreach_id: str = "o-1", to: str = PATIENT_EMAIL) -> Mail:
    """A one-recipient reminder as the pipeline sends it: custom args, category, unsubscribe group."""
    mail = Mail(from_email=From(CLINIC_EMAIL, "Clinic"), to_emails=To(to), subject="Time for your check-up")
    mail.add_content("It has been a while. Call us to book.", "text/plain")
    mail.custom_arg = CustomArg("outreach_id", outreach_id)
    mail.category = Category("reactivation")
    mail.asm = Asm(42)
    return mail


def raw_send(sg: Any, body: dict[str, Any]) -> Any:
    return sg.client.mail.send.post(request_body=body)


def minimal_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": PATIENT_EMAIL}]}],
        "from": {"email": CLINIC_EMAIL},
        "subject": "Time for your check-up",
        "content": [{"type": "text/plain", "value": "Call us to book."}],
    }
    body.update(overrides)
    return body


def sendgrid_errors(err: Exception) -> list[dict[str, Any]]:
    return json.loads(err.body)["errors"]  # type: ignore[attr-defined]


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# SendGrid: Mail Send
# ---------------------------------------------------------------------------------------------


def test_mail_send_accepts_1000_personalizations_in_one_request(sg: Any, control: SandboxControl) -> None:
    mail = Mail(from_email=CLINIC_EMAIL, subject="Time for your check-up")
    mail.add_content("It has been a while. Call us to book.", "text/plain")
    mail.category = Category("reactivation")
    mail.asm = Asm(42)
    for n in range(1000):
        personalization = Personalization()
        personalization.add_to(To(f"patient{n}@example.com"))
        personalization.add_custom_arg(CustomArg("outreach_id", f"o-{n}"))
        mail.add_personalization(personalization)

    response = sg.send(mail)

    assert response.status_code == 202
    x_message_id = response.headers["X-Message-Id"]
    assert x_message_id
    accepted = control.messages("sendgrid")
    assert [r["personalizations"] for r in accepted["sendgrid_requests"]] == [1000]
    assert len(accepted["sendgrid"]) == 1000
    by_outreach = {m["custom_args"]["outreach_id"]: m for m in accepted["sendgrid"]}
    assert by_outreach["o-999"]["to_email"] == "patient999@example.com"
    assert all(m["x_message_id"] == x_message_id and m["msg_id"].startswith(x_message_id) for m in accepted["sendgrid"])
    assert by_outreach["o-0"]["asm_group_id"] == 42 and by_outreach["o-0"]["categories"] == ["reactivation"]


def test_mail_send_rejects_1001_personalizations_with_sendgrids_error(sg: Any, control: SandboxControl) -> None:
    body = minimal_body(personalizations=[{"to": [{"email": f"p{n}@example.com"}]} for n in range(1001)])

    with pytest.raises(BadRequestsError) as raised:
        raw_send(sg, body)

    assert raised.value.status_code == 400
    [error] = sendgrid_errors(raised.value)
    assert error["field"] == "personalizations"
    assert "limited to 1000 personalizations" in error["message"] and "1001" in error["message"]
    assert error["help"].startswith("http://sendgrid.com/docs/")
    assert control.messages("sendgrid")["sendgrid"] == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"from": None}, "from"),
        ({"from": {"email": "not-an-address"}}, "from.email"),
        ({"content": None}, "content"),
        ({"content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
        ({"subject": None}, "subject"),
        ({"personalizations": []}, "personalizations"),
        ({"personalizations": [{"cc": [{"email": PATIENT_EMAIL}]}]}, "personalizations.0.to"),
        ({"personalizations": [{"to": [{"email": "pat.sandbox at example.com"}]}]}, "personalizations.0.to.0.email"),
        (
            {"personalizations": [{"to": [{"email": PATIENT_EMAIL}], "custom_args": {"n": 1}}]},
            "personalizations.0.custom_args.n",
        ),
        ({"categories": [f"c{n}" for n in range(11)]}, "categories"),
        ({"custom_args": "outreach"}, "custom_args"),
        ({"asm": {"group_id": "forty-two"}}, "asm.group_id"),
        ({"send_at": int(time.time()) + 80 * 3600}, "send_at"),
        ({"template_id": "welcome"}, "template_id"),
    ],
)
def test_mail_send_validates_like_sendgrid(sg: Any, control: SandboxControl, change: dict, field: str) -> None:
    body = minimal_body(**change)
    body = {k: v for k, v in body.items() if v is not None}

    with pytest.raises(BadRequestsError) as raised:
        raw_send(sg, body)

    errors = sendgrid_errors(raised.value)
    assert field in [e["field"] for e in errors], errors
    assert all(set(e) == {"message", "field", "help"} for e in errors)
    assert PATIENT_EMAIL not in raised.value.body.decode()
    assert control.messages("sendgrid")["sendgrid"] == []


def test_mail_send_accepts_a_dynamic_template_without_subject_or_content(sg: Any) -> None:
    body = minimal_body(template_id="d-" + "0f" * 16, send_at=int(time.time()) + 3600)
    del body["subject"], body["content"]
    body["personalizations"][0]["dynamic_template_data"] = {"practice": "Clinic"}

    assert raw_send(sg, body).status_code == 202


def test_mail_send_needs_a_valid_api_key(sandbox_server: SandboxServer, control: SandboxControl) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        sendgrid_client("SG.wrong", sandbox_server.url, timeout=CLIENT_TIMEOUT).send(reminder())
    assert raised.value.status_code == 401
    assert sendgrid_errors(raised.value)[0]["field"] is None

    unauthenticated = httpx.post(f"{sandbox_server.url}/v3/mail/send", json=minimal_body(), timeout=CLIENT_TIMEOUT)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["errors"][0]["message"] == "authorization required"

    control.configure(sendgrid_api_keys=[])  # open mode: any key, as in the demo without shared secrets
    assert sendgrid_client("SG.any", sandbox_server.url, timeout=CLIENT_TIMEOUT).send(reminder()).status_code == 202


# ---------------------------------------------------------------------------------------------
# SendGrid: Email Activity (reconciliation)
# ---------------------------------------------------------------------------------------------


def test_email_activity_finds_messages_by_custom_arg_and_msg_id(sg: Any, control: SandboxControl) -> None:
    first = sg.send(reminder("o-1", "one@example.com")).headers["X-Message-Id"]
    sg.send(reminder("o-2", "two@example.com"))

    by_outreach = sg.client.messages.get(query_params={"query": "unique_args['outreach_id']=\"o-2\"", "limit": 10})
    [found] = json.loads(by_outreach.body)["messages"]
    assert found["to_email"] == "two@example.com"
    assert set(found) >= {"msg_id", "status", "from_email", "subject", "to_email", "last_event_time"}
    assert found["status"] in ("processed", "delivered")

    by_prefix = json.loads(sg.client.messages.get(query_params={"query": f"msg_id LIKE '{first}%'"}).body)
    [one] = by_prefix["messages"]
    assert one["to_email"] == "one@example.com"
    exact = json.loads(sg.client.messages.get(query_params={"query": f'msg_id="{one["msg_id"]}"'}).body)
    assert [m["msg_id"] for m in exact["messages"]] == [one["msg_id"]]

    detail = json.loads(sg.client.messages._(one["msg_id"]).get().body)
    assert detail["unique_args"] == {"outreach_id": "o-1"} and detail["asm_group_id"] == 42

    combined = (
        "(unique_args['outreach_id']=\"o-1\" OR unique_args['outreach_id']=\"o-2\") "
        'AND categories="reactivation" AND status IN ("processed","delivered")'
    )
    assert len(json.loads(sg.client.messages.get(query_params={"query": combined}).body)["messages"]) == 2
    assert json.loads(sg.client.messages.get(query_params={"query": 'to_email="none@example.com"'}).body) == {
        "messages": []
    }


def test_email_activity_rejects_bad_queries_and_limits(sg: Any) -> None:
    with pytest.raises(BadRequestsError) as raised:
        sg.client.messages.get(query_params={"query": "unique_args['outreach_id'] ~ 'x'"})
    assert sendgrid_errors(raised.value)[0]["field"] == "query"
    with pytest.raises(BadRequestsError) as raised:
        sg.client.messages.get(query_params={"limit": 1001})
    assert sendgrid_errors(raised.value)[0]["field"] == "limit"


# ---------------------------------------------------------------------------------------------
# Twilio: Messages
# ---------------------------------------------------------------------------------------------


def test_sms_create_fetch_and_list_through_the_twilio_sdk(tw: Client) -> None:
    created = tw.messages.create(
        to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="Time for your check-up. Reply STOP to opt out."
    )

    assert created.sid.startswith("SM") and len(created.sid) == 34 and int(created.sid[2:], 16) >= 0
    assert created.status == "queued"
    assert (created.to, created.from_, created.error_code) == (PATIENT_NUMBER, CLINIC_NUMBER, None)
    assert created.date_created is not None and created.account_sid == ACCOUNT_SID
    assert created.num_segments == "1"

    fetched = eventually(lambda: (m := tw.messages(created.sid).fetch()).status == "delivered" and m)
    assert fetched.date_sent is not None

    since = datetime.now(UTC) - timedelta(minutes=5)
    listed = tw.messages.list(to=PATIENT_NUMBER, date_sent_after=since, limit=20)
    assert [m.sid for m in listed] == [created.sid]
    assert tw.messages.list(to="+15550000000", limit=20) == []


def test_sms_list_pages_through_next_page_uri(tw: Client) -> None:
    sids = {tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body=f"n{n}").sid for n in range(5)}
    assert {m.sid for m in tw.messages.stream(to=PATIENT_NUMBER, page_size=2)} == sids


@pytest.mark.parametrize(
    ("to", "body", "code"),
    [
        ("5558675309", "hi", 21211),
        ("+1 555 867 5309", "hi", 21211),
        (PATIENT_NUMBER, "x" * 1601, 21617),
        (PATIENT_NUMBER, "", 21602),
        ("+15005550001", "hi", 21211),
        ("+15005550009", "hi", 21614),
        ("+15005550004", "hi", 21610),
    ],
)
def test_sms_create_validates_like_twilio(tw: Client, control: SandboxControl, to: str, body: str, code: int) -> None:
    with pytest.raises(TwilioRestException) as raised:
        tw.messages.create(to=to, from_=CLINIC_NUMBER, body=body)

    assert (raised.value.status, raised.value.code) == (400, code)
    payload = json.loads(tw.http_client.last_response.text)
    assert set(payload) == {"code", "message", "more_info", "status"}
    assert to not in payload["message"]
    assert control.messages("twilio")["twilio"] == []


def test_sms_body_of_1600_characters_is_accepted(tw: Client) -> None:
    assert tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="x" * 1600).num_segments == "11"


def test_sms_needs_the_accounts_auth_token(sandbox_server: SandboxServer, control: SandboxControl) -> None:
    wrong = twilio_client(ACCOUNT_SID, "not-the-token", sandbox_server.url, timeout=CLIENT_TIMEOUT)
    with pytest.raises(TwilioRestException) as raised:
        wrong.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    assert (raised.value.status, raised.value.code) == (401, 20003)


def test_twilio_sdk_also_works_with_the_api_domains_base_url(
    sandbox_server: SandboxServer, control: SandboxControl
) -> None:
    """The documented alternative to the rebasing HTTP client: override the Api domain's base_url."""
    client = Client(ACCOUNT_SID, AUTH_TOKEN, http_client=TwilioHttpClient(timeout=CLIENT_TIMEOUT))
    client.api.base_url = sandbox_server.url

    message = client.messages.create(to=PATIENT_NUMBER, messaging_service_sid="MG" + "0" * 32, body="hi")

    assert message.status == "accepted" and message.messaging_service_sid == "MG" + "0" * 32
    assert control.messages("twilio")["twilio"][0]["sid"] == message.sid


# ---------------------------------------------------------------------------------------------
# Failure modes
# ---------------------------------------------------------------------------------------------


def test_429_carries_retry_after_through_both_sdks(sg: Any, tw: Client, control: SandboxControl) -> None:
    control.add_fault("429", "sendgrid", retry_after=3)
    control.add_fault("429", "twilio", retry_after=4)

    with pytest.raises(TooManyRequestsError) as raised:
        sg.send(reminder())
    assert raised.value.status_code == 429 and raised.value.headers["Retry-After"] == "3"
    with pytest.raises(TwilioRestException) as twilio_raised:
        tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    assert (twilio_raised.value.status, twilio_raised.value.code) == (429, 20429)
    assert tw.http_client.last_response.headers["Retry-After"] == "4"

    # Each fault was for one request: the retries go through, and nothing was accepted twice.
    assert sg.send(reminder()).status_code == 202
    tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    messages = control.messages()
    assert (len(messages["sendgrid"]), len(messages["twilio"])) == (1, 1)
    responses = control.stats()["responses"]
    assert responses["sendgrid.mail_send"] == {"429": 1, "202": 1}
    assert responses["twilio.messages_create"] == {"429": 1, "201": 1}


def test_5xx_faults_apply_to_the_next_n_requests(sg: Any, tw: Client, control: SandboxControl) -> None:
    control.add_fault("500", "sendgrid", count=2)
    control.add_fault("503", "any", count=1, retry_after=2)

    for expected in (InternalServerError, InternalServerError):
        with pytest.raises(expected):
            sg.send(reminder())
    with pytest.raises(ServiceUnavailableError) as raised:
        sg.send(reminder())
    assert raised.value.headers["Retry-After"] == "2"
    assert sg.send(reminder()).status_code == 202

    control.add_fault("500", "twilio")
    with pytest.raises(TwilioRestException) as twilio_raised:
        tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    assert (twilio_raised.value.status, twilio_raised.value.code) == (500, 20500)
    assert len(control.messages()["sendgrid"]) == 1 and control.messages()["twilio"] == []


def test_hang_ends_in_a_client_timeout_and_nothing_is_accepted(
    sandbox_server: SandboxServer, control: SandboxControl
) -> None:
    control.add_fault("hang", "any", count=2, hang_seconds=20)
    impatient_sg = sendgrid_client(SENDGRID_KEY, sandbox_server.url, timeout=1)
    impatient_tw = twilio_client(ACCOUNT_SID, AUTH_TOKEN, sandbox_server.url, timeout=1)

    started = time.monotonic()
    with pytest.raises((TimeoutError, URLError)):
        impatient_sg.send(reminder())
    with pytest.raises(requests.exceptions.Timeout):
        impatient_tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")

    assert time.monotonic() - started < 10
    assert control.messages() == {"sendgrid": [], "sendgrid_requests": [], "twilio": []}


def test_hang_then_accept_is_a_timeout_for_the_client_but_a_sent_message(
    sandbox_server: SandboxServer, control: SandboxControl
) -> None:
    control.add_fault("hang", "sendgrid", hang_seconds=1.5, then="accept")
    with pytest.raises((TimeoutError, URLError)):
        sendgrid_client(SENDGRID_KEY, sandbox_server.url, timeout=0.5).send(reminder("o-slow"))

    [accepted] = eventually(lambda: control.messages("sendgrid")["sendgrid"])
    assert accepted["custom_args"] == {"outreach_id": "o-slow"}


def test_accept_then_drop_sendgrid_message_is_findable_for_reconciliation(sg: Any, control: SandboxControl) -> None:
    control.add_fault("accept_then_drop", "sendgrid")

    with pytest.raises((ConnectionError, URLError, OSError)):
        sg.send(reminder("o-crash"))

    [accepted] = control.messages("sendgrid")["sendgrid"]
    assert accepted["custom_args"]["outreach_id"] == "o-crash"
    found = json.loads(sg.client.messages.get(query_params={"query": "unique_args['outreach_id']=\"o-crash\""}).body)
    assert [m["msg_id"] for m in found["messages"]] == [accepted["msg_id"]]
    assert control.stats()["responses"]["sendgrid.mail_send"] == {"dropped": 1}


def test_accept_then_drop_sms_is_findable_by_list_and_fetch(tw: Client, control: SandboxControl) -> None:
    control.add_fault("accept_then_drop", "twilio")

    with pytest.raises(requests.exceptions.ConnectionError):
        tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")

    [accepted] = control.messages("twilio")["twilio"]
    since = datetime.now(UTC) - timedelta(minutes=5)
    listed = eventually(lambda: tw.messages.list(to=PATIENT_NUMBER, date_sent_after=since, limit=10))
    assert [m.sid for m in listed] == [accepted["sid"]]
    assert tw.messages(accepted["sid"]).fetch().to == PATIENT_NUMBER


def test_lookup_faults_leave_sends_alone(sg: Any, control: SandboxControl) -> None:
    control.add_fault("503", "sendgrid", endpoint="lookup")

    assert sg.send(reminder()).status_code == 202
    with pytest.raises(ServiceUnavailableError):
        sg.client.messages.get(query_params={"limit": 10})
    assert sg.client.messages.get(query_params={"limit": 10}).status_code == 200


def test_control_api_rejects_bad_faults(control: SandboxControl, sandbox_server: SandboxServer) -> None:
    for bad in ({"mode": "404"}, {"mode": "429", "provider": "mailgun"}, {"mode": "429", "count": 0}):
        response = httpx.post(f"{sandbox_server.url}/_sandbox/faults", json=bad, timeout=CLIENT_TIMEOUT)
        assert response.status_code == 400 and response.json()["error"]
    assert control.stats()["faults"]["pending"] == 0


# ---------------------------------------------------------------------------------------------
# Signed webhooks
# ---------------------------------------------------------------------------------------------


def _events(requests_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for request in requests_ for event in json.loads(request["body"])]


def test_sendgrid_event_webhook_is_signed_and_verifies_with_the_sdk(
    sg: Any, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    control.configure(events_url=receiver.url("/sendgrid/events"))
    mail = reminder("o-7")
    second = Personalization()
    second.add_to(To("second@example.com"))
    second.add_custom_arg(CustomArg("outreach_id", "o-8"))
    mail.add_personalization(second, index=1)
    sg.send(mail)

    posts = receiver.wait_for(lambda r: len(_events(r)) >= 4)

    public_key = control.public_key()
    verifier = EventWebhook(public_key)
    for post in posts:
        headers = post["headers"]
        signature = headers["X-Twilio-Email-Event-Webhook-Signature"]
        timestamp = headers["X-Twilio-Email-Event-Webhook-Timestamp"]
        assert verifier.verify_signature(post["body"].decode(), signature, timestamp)
        assert not verifier.verify_signature(post["body"].decode().replace("o-7", "o-9"), signature, timestamp)
        assert headers["Content-Type"] == "application/json"
    events = _events(posts)
    assert sorted((e["outreach_id"], e["event"]) for e in events) == [
        ("o-7", "delivered"),
        ("o-7", "processed"),
        ("o-8", "delivered"),
        ("o-8", "processed"),
    ]
    for event in events:
        assert {"email", "timestamp", "sg_event_id", "sg_message_id", "smtp-id"} <= set(event)
        assert event["category"] == "reactivation" and event["asm_group_id"] == 42
    assert len({e["sg_event_id"] for e in events}) == 4
    # SendGrid's API for the verification key answers with the same key.
    settings = json.loads(sg.client.user.webhooks.event.settings.signed.get().body)
    assert settings["public_key"] == public_key
    found = json.loads(sg.client.messages.get(query_params={"query": "unique_args['outreach_id']=\"o-8\""}).body)
    assert found["messages"][0]["status"] == "delivered"


def test_injected_sendgrid_events_are_signed_and_suppress_later_sends(
    sg: Any, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    control.configure(events_url=receiver.url("/sendgrid/events"))
    sg.send(reminder("o-1", "bounces@example.com"))
    sg.send(reminder("o-2", "unsubscribes@example.com"))
    sg.send(reminder("o-3", "complains@example.com"))
    receiver.wait_for(lambda r: len(_events(r)) >= 6)
    by_outreach = {m["custom_args"]["outreach_id"]: m["msg_id"] for m in control.messages("sendgrid")["sendgrid"]}

    assert control.sendgrid_event("bounce", by_outreach["o-1"]) == [by_outreach["o-1"]]
    control.sendgrid_event("unsubscribe", by_outreach["o-2"])
    control.sendgrid_event("spamreport", by_outreach["o-3"])
    posts = receiver.wait_for(lambda r: {"bounce", "unsubscribe", "spamreport"} <= {e["event"] for e in _events(r)})

    verifier = EventWebhook(control.public_key())
    assert all(
        verifier.verify_signature(
            p["body"].decode(),
            p["headers"]["X-Twilio-Email-Event-Webhook-Signature"],
            p["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
        for p in posts
    )
    bounce = next(e for e in _events(posts) if e["event"] == "bounce")
    assert (
        bounce["outreach_id"] == "o-1" and bounce["type"] == "bounce" and bounce["sg_message_id"] == by_outreach["o-1"]
    )
    detail = json.loads(sg.client.messages._(by_outreach["o-1"]).get().body)
    assert detail["status"] == "not_delivered"

    # SendGrid still accepts mail to suppressed addresses, then drops it.
    for n, address in enumerate(("bounces@example.com", "unsubscribes@example.com", "complains@example.com")):
        assert sg.send(reminder(f"o-again-{n}", address)).status_code == 202
    posts = receiver.wait_for(lambda r: sum(e["event"] == "dropped" for e in _events(r)) == 3)
    reasons = {e["outreach_id"]: e["reason"] for e in _events(posts) if e["event"] == "dropped"}
    assert reasons == {
        "o-again-0": "Bounced Address",
        "o-again-1": "Unsubscribed Address",
        "o-again-2": "Spam Reporting Address",
    }


def test_twilio_status_callbacks_are_signed_and_validate_with_the_sdk(
    tw: Client, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    callback = receiver.url("/twilio/status?outreach=o-1")
    message = tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi", status_callback=callback)

    posts = receiver.wait_for(lambda r: len(r) >= 2)

    validator = RequestValidator(AUTH_TOKEN)
    statuses = []
    for post in posts:
        params = dict(parse_qsl(post["body"].decode(), keep_blank_values=True))
        assert validator.validate(callback, params, post["headers"]["X-Twilio-Signature"])
        assert not RequestValidator("another-token").validate(callback, params, post["headers"]["X-Twilio-Signature"])
        assert not validator.validate(
            callback, {**params, "MessageStatus": "failed"}, post["headers"]["X-Twilio-Signature"]
        )
        assert (params["MessageSid"], params["To"], params["From"], params["AccountSid"]) == (
            message.sid,
            PATIENT_NUMBER,
            CLINIC_NUMBER,
            ACCOUNT_SID,
        )
        assert "ErrorCode" not in params
        statuses.append(params["MessageStatus"])
    assert statuses == ["sent", "delivered"]

    control.sms_status(message.sid, "undelivered", error_code=30005)
    [failure] = [p for p in receiver.wait_for(lambda r: len(r) >= 3)[2:]]
    params = dict(parse_qsl(failure["body"].decode(), keep_blank_values=True))
    assert (params["MessageStatus"], params["ErrorCode"]) == ("undelivered", "30005")
    assert validator.validate(callback, params, failure["headers"]["X-Twilio-Signature"])
    assert tw.messages(message.sid).fetch().error_code == 30005


def test_inbound_stop_is_posted_signed_and_blocks_later_sends(
    tw: Client, control: SandboxControl, receiver: WebhookReceiver
) -> None:
    inbound_url = receiver.url("/twilio/inbound")

    sid = control.inbound_sms(PATIENT_NUMBER, CLINIC_NUMBER, "Stop", url=inbound_url, account_sid=ACCOUNT_SID)

    [post] = receiver.wait_for(lambda r: len(r) >= 1)
    params = dict(parse_qsl(post["body"].decode(), keep_blank_values=True))
    assert RequestValidator(AUTH_TOKEN).validate(inbound_url, params, post["headers"]["X-Twilio-Signature"])
    assert (params["Body"], params["From"], params["To"], params["MessageSid"]) == (
        "Stop",
        PATIENT_NUMBER,
        CLINIC_NUMBER,
        sid,
    )
    assert params["OptOutType"] == "STOP" and params["SmsStatus"] == "received"

    with pytest.raises(TwilioRestException) as raised:
        tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    assert raised.value.code == 21610

    control.inbound_sms(PATIENT_NUMBER, CLINIC_NUMBER, "START", url=inbound_url)  # one account: no account_sid needed
    assert tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi").status == "queued"
    assert tw.messages(sid).fetch().direction == "inbound"


def test_webhook_failures_are_retried_then_counted_never_raised(sg: Any, control: SandboxControl) -> None:
    with WebhookReceiver(status=500) as failing:
        control.configure(events_url=failing.url("/sendgrid/events"), webhook_retries=1)
        started = time.monotonic()
        assert sg.send(reminder()).status_code == 202
        assert time.monotonic() - started < 2
        assert control.drain(timeout=10)
        assert len(failing.requests) == 4  # processed + delivered batches, each tried twice

    webhooks = control.stats()["webhooks"]
    assert webhooks["sendgrid_events.failed"] == 2 and webhooks["sendgrid_events.retried"] == 2
    assert {w["outcome"] for w in control.webhooks()} == {"500"}

    control.configure(events_url="http://127.0.0.1:9/unreachable", webhook_retries=0)
    assert sg.send(reminder()).status_code == 202
    assert control.drain(timeout=15)
    assert control.stats()["webhooks"]["sendgrid_events.failed"] == 4


def test_duplicate_webhook_deliveries_on_demand(sg: Any, control: SandboxControl, receiver: WebhookReceiver) -> None:
    control.configure(events_url=receiver.url("/sendgrid/events"), webhook_copies=2)
    sg.send(reminder())

    events = _events(receiver.wait_for(lambda r: len(_events(r)) >= 4))

    assert len(events) == 4 and len({e["sg_event_id"] for e in events}) == 2


# ---------------------------------------------------------------------------------------------
# Control API, privacy, key persistence, command line
# ---------------------------------------------------------------------------------------------


def test_stats_count_requests_per_endpoint(sg: Any, tw: Client, control: SandboxControl) -> None:
    sg.send(reminder())
    sg.client.messages.get(query_params={"limit": 5})
    tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body="hi")
    tw.messages.list(limit=5)

    stats = control.stats()

    for endpoint in ("sendgrid.mail_send", "sendgrid.messages_list", "twilio.messages_create", "twilio.messages_list"):
        assert stats["requests"][endpoint] == 1
    assert stats["accepted"] == {
        "sendgrid_requests": 1,
        "sendgrid_messages": 1,
        "twilio_messages": 1,
        "twilio_inbound": 0,
    }
    control.reset()
    assert "sendgrid.mail_send" not in control.stats()["requests"]


def test_logs_hold_ids_and_counts_but_no_personal_data(
    sg: Any, tw: Client, control: SandboxControl, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    control.configure(events_url=receiver.url("/sendgrid"), twilio_inbound_url=receiver.url("/inbound"))
    body_text = "Your cleaning is overdue"
    sg.send(reminder("o-1"))
    sg.client.messages.get(query_params={"query": f'to_email="{PATIENT_EMAIL}"'})
    control.add_fault("accept_then_drop", "twilio")
    with pytest.raises(requests.exceptions.ConnectionError):
        tw.messages.create(to=PATIENT_NUMBER, from_=CLINIC_NUMBER, body=body_text)
    tw.messages.list(to=PATIENT_NUMBER, limit=5)
    with pytest.raises(TwilioRestException):
        tw.messages.create(to="+1555867530", from_=CLINIC_NUMBER, body=body_text)
    control.inbound_sms(PATIENT_NUMBER, CLINIC_NUMBER, "STOP")
    control.drain(timeout=10)

    # The sandbox's own loggers, uvicorn's, the webhook poster's, and the twilio SDK through the rebasing
    # client (which keeps its INFO request lines quiet). Client libraries such as urllib3 log URLs at DEBUG:
    # the pipeline keeps those at WARNING.
    ours = ("reactivation", "uvicorn", "httpx", "twilio")
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in ours)
    assert "accepted" in logged and "SM" in logged  # the sandbox does log, with ids
    for personal in (PATIENT_EMAIL, PATIENT_NUMBER, "8675309", body_text, "Time for your check-up"):
        assert personal not in logged


def test_local_providers_quiet_the_services_only_while_they_run(warehouse: str) -> None:
    from reactivation.local_services import local_providers

    names = ("reactivation.sandbox", "reactivation.webhooks")
    before = {name: logging.getLogger(name).level for name in names}
    with local_providers(warehouse):
        assert all(logging.getLogger(name).level == logging.WARNING for name in names)
    assert {name: logging.getLogger(name).level for name in names} == before


def test_signing_key_file_keeps_the_public_key_across_restarts(tmp_path: Path) -> None:
    key_file = tmp_path / "sandbox" / "event-webhook.pem"
    with SandboxServer(sendgrid_key_file=key_file) as first:
        first_key = SandboxControl(first.url, timeout=CLIENT_TIMEOUT).public_key()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    with SandboxServer(sendgrid_key_file=key_file) as second:
        assert SandboxControl(second.url, timeout=CLIENT_TIMEOUT).public_key() == first_key


def test_credentials_come_from_the_pipelines_connections() -> None:
    changes = settings_from_environment(
        {
            "AIRFLOW_CONN_SENDGRID_DEFAULT": "sendgrid://:SG.from%2Fenv@provider-sandbox:8025",
            "AIRFLOW_CONN_SMS_DEFAULT": json.dumps({"login": ACCOUNT_SID, "password": "tok", "host": "x"}),
            "REACTIVATION_SANDBOX_EVENTS_URL": "http://webhook-receiver:8030/webhooks/sendgrid",
        }
    )
    assert changes == {
        "sendgrid_api_keys": ["SG.from/env"],
        "twilio_accounts": {ACCOUNT_SID: "tok"},
        "events_url": "http://webhook-receiver:8030/webhooks/sendgrid",
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    """``reactivation sandbox serve`` as Compose runs it: foreground, SIGTERM ends it cleanly."""
    import argparse

    parser = argparse.ArgumentParser(prog="reactivation")
    add_subcommand(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sandbox", "serve", "--port", "8025", "--events-url", "http://127.0.0.1:9/e"])
    assert (args.host, args.port, args.events_url, args.func.__name__) == (
        "127.0.0.1",
        8025,
        "http://127.0.0.1:9/e",
        "_cmd_serve",
    )

    port = _free_port()
    script = (
        "import argparse, sys\n"
        "from reactivation.sandbox import add_subcommand\n"
        "parser = argparse.ArgumentParser()\n"
        "add_subcommand(parser.add_subparsers(dest='command', required=True))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(args.func(args))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins"), "REACTIVATION_STATE_DIR": str(tmp_path)}
    command = [sys.executable, "-c", script, "sandbox", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        health = eventually(lambda: _health(port), timeout=20)
        assert health == {"status": "ok"}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0, stderr
    assert "provider sandbox on http://127.0.0.1" in stderr
    assert (tmp_path / "sandbox" / "sendgrid-event-webhook-key.pem").exists()


def _health(port: int) -> dict[str, Any] | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_sandbox/health", timeout=1).json()
    except httpx.HTTPError:
        return None


def test_importing_the_package_stays_light() -> None:
    code = (
        "import sys; import reactivation.sandbox as s; "
        "heavy = [m for m in ('starlette', 'uvicorn', 'sendgrid', 'twilio', 'httpx') if m in sys.modules]; "
        "print(heavy)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "plugins")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.stdout.strip() == "[]", result.stderr
