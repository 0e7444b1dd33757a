"""Request bodies are capped before authentication (issue 14, item 8): an unauthenticated
200 MB body was read whole before the 401 (hub memory 90 -> 691 MiB). Now a Content-Length over
``MAX_BODY_BYTES`` is refused with 413 before the body is read, and a chunked body when it
passes the limit; the connection is closed, so the rest is never read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.hub.api.conftest import LiveServer
from tests.support import free_port, port_open, stop, wait_for

MIB = 1024 * 1024
LIMIT = MIB  # the default MAX_BODY_BYTES
EXE = Path(sys.executable).with_name("smsa-hub")


class Body:
    """A streamed (chunked) request body of ``total`` bytes that counts what was taken."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.sent = total, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        piece = b"x" * self.chunk
        while self.sent < self.total:
            self.sent += self.chunk
            yield piece


def declared_only(url: str, path: str, length: int) -> bytes:
    """Send only the head of a request declaring ``length`` body bytes; the raw answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {length}\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):  # the hub answers and closes without the body
            answer += chunk
        return answer


def test_a_declared_oversized_body_is_refused_unread(live_server: LiveServer) -> None:
    answer = declared_only(live_server.url, "/api/v1/providers", 200 * 1000 * 1000)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    assert b"connection: close" in head.lower()
    assert (
        body == b'{"detail":"request body larger than 1048576 bytes","error":"BodyTooLargeError"}'
    )


def test_a_streamed_body_is_cut_at_the_limit(client: httpx.Client) -> None:
    body = Body(256 * MIB)
    r = client.post("/api/v1/providers", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "BodyTooLargeError"
    assert r.headers["connection"] == "close"
    # The hub stopped reading: what left the client is the limit plus the sockets' buffers.
    assert body.sent < 32 * MIB, body.sent


def test_a_body_within_the_limit_reaches_the_route(client: httpx.Client) -> None:
    raw = b'{"id": "p", "name": "' + b"x" * (LIMIT - 100) + b'", "tier": "retail"}'
    assert len(raw) <= LIMIT
    r = client.post("/api/v1/providers", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 401  # read, then refused for the missing key


@contextmanager
def served_hub(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """``smsa-hub serve`` as its own process (no MQTT, no scheduler): its URL and pid."""
    port = free_port()
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "hub"]
    db = f"sqlite:///{tmp_path / 'hub.db'}"
    env = {**os.environ, "SMSA_HUB_MQTT": "", "SMSA_HUB_HTTP": f"127.0.0.1:{port}",
           "SMSA_HUB_SCHEDULER": "false", "SMSA_HUB_DB": db}  # fmt: skip
    log = (tmp_path / "hub.log").open("wb")
    proc = subprocess.Popen([*cmd, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, (tmp_path / "hub.log").read_text()
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        stop(proc)
        log.close()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_the_hub_process_does_not_grow_with_an_unauthenticated_huge_body(tmp_path: Path) -> None:
    """The reported attack against ``smsa-hub serve``: 200 MiB without a key, chunked and with
    a Content-Length. The hub's peak memory stays where it was."""
    with served_hub(tmp_path) as (url, pid), httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/healthz").status_code == 200
        assert http.post("/api/v1/providers", json={}).status_code == 401  # warm: a body read
        before = peak_rss_mib(pid)
        body = Body(200 * MIB)
        r = http.post("/api/v1/providers", content=body,
                      headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 413, r.text
        assert body.sent < 32 * MIB, body.sent
        assert declared_only(url, "/api/v1/providers", 200 * MIB).startswith(b"HTTP/1.1 413")
        grown = peak_rss_mib(pid) - before
        assert grown < 16, f"peak memory grew {grown:.0f} MiB"
