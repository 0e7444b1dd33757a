"""The gateway's local endpoint for offline top-up tokens (``[tokens] host`` and ``port``,
127.0.0.1:8764 unless configured): the ``smsa-agent ... token METER CODE`` command and a
keypad post to it, and the engine applies the token on its own thread (``Engine.submit_token``).

``POST /tokens`` with ``{"meter", "code"}`` answers 200 ``{"ok": true, "meter", "amount",
"count", "balance"}`` (minor units) when the credit is applied, 409 ``{"ok": false, "reason",
"detail"}`` when the token is refused (``used``, ``too_old``, ``invalid``, ``cancelled``,
``locked_out``), 400 for a body that is not that, 503 when the engine did not answer in time.
Bound to loopback by default: anyone who can reach it can type tokens, as at a keypad, and the
lockout is what slows a guesser.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from protocol.tokens import TokenRejectedError

log = logging.getLogger(__name__)

MAX_BODY = 4096
ANSWER_WITHIN_S = 10.0


class Redeemer(Protocol):
    def submit_token(self, meter: str, code: str) -> Future[Any]: ...


class LocalApi:
    """A small HTTP server in a daemon thread; :meth:`stop` closes it."""

    def __init__(self, host: str, port: int, engine: Redeemer) -> None:
        handler = type("Handler", (_Handler,), {"engine": engine})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="local-api",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        log.info("token endpoint on http://%s:%d/tokens", host, self.address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    engine: Redeemer

    def do_POST(self) -> None:
        if self.path != "/tokens":
            self._answer(HTTPStatus.NOT_FOUND, {"ok": False, "reason": "not_found"})
            return
        try:
            meter, code = _body(self.rfile.read(min(int(self.headers.get("Content-Length") or 0),
                                                    MAX_BODY)))  # fmt: skip
        except ValueError as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"ok": False, "reason": "bad_request",
                                                  "detail": str(exc)})  # fmt: skip
            return
        try:
            applied = self.engine.submit_token(meter, code).result(ANSWER_WITHIN_S)
        except TokenRejectedError as exc:
            self._answer(HTTPStatus.CONFLICT, {"ok": False, "reason": exc.reason,
                                               "detail": str(exc)})  # fmt: skip
            return
        except FutureTimeout:
            self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "reason": "busy"})
            return
        answer = {"ok": True, "meter": applied.meter, "amount": applied.amount,
                  "count": applied.count, "balance": applied.balance}  # fmt: skip
        self._answer(HTTPStatus.OK, answer)

    def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("local api: " + format, *args)  # never the body: it holds the token


def _body(raw: bytes) -> tuple[str, str]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ValueError("the body is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("meter"), str) \
            or not isinstance(data.get("code"), str):  # fmt: skip
        raise ValueError('the body must be {"meter": "...", "code": "..."}')
    return data["meter"], data["code"]
