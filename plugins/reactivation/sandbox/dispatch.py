"""Background work of the sandbox: timed delivery transitions and webhook posts with retries.

One worker thread runs due jobs in order, away from the ASGI event loop, so an API response never
waits for a webhook and events for one message go out in the order they happened. A post that
fails (connection error or non-2xx) is retried with backoff like the providers do, then counted
as failed; nothing is raised to the API side. Logs carry kinds, counts and message ids only.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import httpx

from reactivation.sandbox.state import SandboxState, iso_utc

log = logging.getLogger("reactivation.sandbox")

MAX_BACKOFF_SECONDS = 30.0


@dataclass
class WebhookPost:
    """One HTTP POST the sandbox owes a receiver; ``sign`` (re)computes signature headers per attempt."""

    kind: str
    url: str
    body: bytes
    headers: dict[str, str]
    message_ids: tuple[str, ...]
    sign: Callable[[bytes], dict[str, str]] | None = None
    attempt: int = 0
    copy: int = 1
    events: int = 1


def _safe_target(url: str) -> str:
    """host + path of a URL, without credentials or query string (may hold tokens), for logs."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


class WebhookDispatcher:
    """A timer queue run by one worker thread, plus the HTTP client that posts webhooks."""

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._running = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    # lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        with self._condition:
            if self._thread is not None:
                return
            self._stopping = False
            self._client = httpx.Client(follow_redirects=False, trust_env=False)
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker; jobs not yet due are dropped (the sandbox is going away)."""
        with self._condition:
            self._stopping = True
            self._queue.clear()
            self._condition.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self._client is not None:
            self._client.close()
            self._client = None

    def clear(self) -> None:
        """Drop every job not yet started (used by the control API's reset)."""
        with self._condition:
            self._queue.clear()
            self._condition.notify_all()

    # scheduling -------------------------------------------------------------------------------

    def call_later(self, delay: float, job: Callable[[], None]) -> None:
        """Run ``job`` on the worker thread after ``delay`` seconds."""
        with self._condition:
            heapq.heappush(self._queue, (time.monotonic() + max(0.0, delay), next(self._sequence), job))
            self._condition.notify_all()

    def post(self, webhook: WebhookPost, delay: float = 0.0) -> None:
        """Queue a webhook POST (and its duplicate copies if the settings ask for them)."""
        copies = self._state.settings.webhook_copies
        self._state.count(f"webhook.{webhook.kind}.scheduled")
        for number in range(1, copies + 1):
            copy = replace(webhook, copy=number)
            self.call_later(delay, lambda copy=copy: self._attempt(copy))

    @property
    def pending(self) -> int:
        with self._condition:
            return len(self._queue) + self._running

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job is queued or running (True), or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._queue or self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
            return True

    # worker -----------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._condition.wait(wait)
                if self._stopping:
                    return
                _, _, job = heapq.heappop(self._queue)
                self._running += 1
            try:
                job()
            except Exception as exc:  # a bug in one job must not stop the sandbox's event stream
                self._state.count("webhook.job_errors")
                log.warning("sandbox background job failed: %s", type(exc).__name__)
            finally:
                with self._condition:
                    self._running -= 1
                    self._condition.notify_all()

    def _attempt(self, webhook: WebhookPost) -> None:
        settings = self._state.settings
        webhook.attempt += 1
        headers = dict(webhook.headers)
        if webhook.sign is not None:
            headers.update(webhook.sign(webhook.body))
        client = self._client
        if client is None:  # stopped meanwhile
            return
        outcome: str
        try:
            response = client.post(webhook.url, content=webhook.body, headers=headers, timeout=settings.webhook_timeout)
            outcome = str(response.status_code)
            ok = 200 <= response.status_code < 300
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
            ok = False
        self._state.log_webhook(
            {
                "kind": webhook.kind,
                "target": _safe_target(webhook.url),
                "attempt": webhook.attempt,
                "copy": webhook.copy,
                "outcome": outcome,
                "ok": ok,
                "events": webhook.events,
                "message_ids": list(webhook.message_ids[:20]),
                "at": iso_utc(time.time()),
            }
        )
        if ok:
            self._state.count(f"webhook.{webhook.kind}.posted")
            return
        if webhook.attempt <= settings.webhook_retries:
            self._state.count(f"webhook.{webhook.kind}.retried")
            backoff = min(MAX_BACKOFF_SECONDS, settings.webhook_retry_backoff * 2 ** (webhook.attempt - 1))
            self.call_later(backoff, lambda: self._attempt(webhook))
            return
        self._state.count(f"webhook.{webhook.kind}.failed")
        log.warning(
            "sandbox webhook %s to %s failed after %d attempt(s): %s (%d event(s))",
            webhook.kind,
            _safe_target(webhook.url),
            webhook.attempt,
            outcome,
            webhook.events,
        )
