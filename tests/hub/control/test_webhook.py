"""The webhook channel against a real HTTP server on 127.0.0.1: signed, retried, in order."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.app import build_app
from hub.compose import IngestOptions, compose
from hub.control.engine import CreditControl
from hub.control.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Channels,
    WebhookNotifier,
    signature,
    verify,
)
from hub.settings import HubSettings
from tests.hub.control.scene import Clock, make_scene
from tests.support import free_port, wait_for

SECRET = "s3cret"
TS, SIG = TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()  # HTTP headers ignore case


@dataclass
class Receiver:
    """What the HTTP server saw; ``answers`` are the status codes to give, then 200."""

    url: str
    answers: list[int] = field(default_factory=list)
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the deliveries that carried a valid signature."""
        out = []
        for headers, body in self.hits:
            if verify(SECRET, headers[TS], body, headers[SIG]):
                out.append(json.loads(body))
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(f"http://127.0.0.1:{port}/hook")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                state.hits.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def webhook(receiver: Receiver) -> Iterator[Callable[..., WebhookNotifier]]:
    made: list[WebhookNotifier] = []

    def make(**options: Any) -> WebhookNotifier:
        options.setdefault("backoff_s", 0.01)
        notifier = WebhookNotifier(receiver.url, SECRET, **options)
        notifier.start()
        made.append(notifier)
        return notifier

    try:
        yield make
    finally:
        for notifier in made:
            notifier.stop()


def test_delivery_is_signed_and_retried(
    receiver: Receiver, webhook: Callable[..., WebhookNotifier]
) -> None:
    receiver.answers = [500, 503]  # two failures, then the receiver is back
    notifier = webhook()
    notifier.notify({"id": 1, "kind": "low_credit", "meter": "m1", "reason": "below 500"})
    wait_for(lambda: notifier.delivered == 1)
    assert len(receiver.hits) == 3
    assert receiver.accepted()[-1]["kind"] == "low_credit"
    headers, body = receiver.hits[-1]
    assert headers[SIG] == signature(SECRET, headers[TS], body)
    assert not verify("other", headers[TS], body, headers[SIG])
    assert not verify(SECRET, "0", body, signature(SECRET, "0", body)), "stale timestamp"


def test_client_errors_are_final_and_attempts_bounded(
    receiver: Receiver, webhook: Callable[..., WebhookNotifier]
) -> None:
    receiver.answers = [400, 500, 500, 500]
    notifier = webhook(attempts=3)
    notifier.notify({"id": 1, "kind": "low_credit"})  # 400: not retried
    notifier.notify({"id": 2, "kind": "low_credit"})  # 500 three times: given up
    wait_for(lambda: notifier.failed == 2)
    assert len(receiver.hits) == 4 and notifier.delivered == 0


def test_unreachable_receiver_is_given_up(webhook: Callable[..., WebhookNotifier]) -> None:
    notifier = WebhookNotifier(f"http://127.0.0.1:{free_port()}/", SECRET, attempts=2,
                               backoff_s=0.01)  # fmt: skip
    notifier.start()
    try:
        notifier.notify({"id": 1, "kind": "operator_alert"})
        wait_for(lambda: notifier.failed == 1)
    finally:
        notifier.stop()


def test_bad_configuration_is_one_line() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookNotifier("ftp://x", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookNotifier("http://127.0.0.1:1/", "")


def test_credit_control_notifies_low_credit_and_alerts(
    sqlite_engine: Engine, clock: Clock, receiver: Receiver,
    webhook: Callable[..., WebhookNotifier],
) -> None:  # fmt: skip
    notifier = webhook()
    control = CreditControl(sqlite_engine, None, Channels(notifier), clock=clock)
    s = make_scene(sqlite_engine, control, balance=1000, rules={"low_credit": [500]})
    s.use(600)
    p = make_scene(sqlite_engine, control, balance=0, protected=True)
    p.use(100)
    wait_for(lambda: notifier.delivered == 2)
    got = {(e["kind"], e["meter"]) for e in receiver.accepted()}
    assert got == {("low_credit", s.meter), ("operator_alert", p.meter)}
    # without a publisher the prompt is recorded as pending (nobody to send it to)
    assert s.events("low_credit")[0]["data"]["status"] == "queued"


def test_the_app_gives_ingest_the_same_channels(sqlite_engine: Engine, receiver: Receiver) -> None:
    settings = HubSettings(db="sqlite:///unused.db", mqtt="mqtt://127.0.0.1:1",
                           webhook_url=receiver.url, webhook_secret=SECRET,
                           scheduler=False)  # fmt: skip
    services = compose(settings, sqlite_engine, ingest=IngestOptions(client_id="never-started"))
    app = build_app(services)
    control: CreditControl = app.state.hub.control
    assert services.ingest is not None and services.ingest.control is control
    assert isinstance(control.notifier, Channels)
    assert any(isinstance(c, WebhookNotifier) for c in control.notifier.channels)
