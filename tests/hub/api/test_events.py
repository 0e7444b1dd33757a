"""Events: query filters, and the SSE stream (live, resumed with Last-Event-ID, token auth)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import Engine

from hub.db import make_engine, run_tx
from hub.events import record_event
from tests.hub.api.conftest import Keys

STREAM = "/api/v1/events/stream"


def frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """SSE frames as dicts: {"id": ..., "data": ..., "comment": ...}; one per blank line."""
    frame: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            frame["comment"] = line[1:].strip()
        else:
            name, _, value = line.partition(":")
            frame[name] = value.lstrip(" ")


def events_from(it: Iterator[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of a frame iterator (one iterator per response)."""
    out = []
    for frame in it:
        if "data" in frame:
            event = json.loads(frame["data"])
            assert frame["id"] == str(event["id"])
            out.append(event)
            if len(out) == count:
                break
    return out


def command(client: httpx.Client, keys: Keys, meter: str, action: str, reason: str) -> str:
    r = client.post(
        f"/api/v1/meters/{meter}/{action}", json={"reason": reason}, headers=keys.h("operator")
    )
    assert r.status_code == 202, r.text
    return str(r.json()["command_id"])


def test_operator_action_is_audited(client: httpx.Client, keys: Keys) -> None:
    command_id = command(client, keys, "m1", "disconnect", "unpaid arrears")
    events = client.get("/api/v1/events?kind=disconnect", headers=keys.h("admin")).json()
    assert len(events) == 1
    event = events[0]
    assert event["meter"] == "m1"
    assert event["reason"] == "unpaid arrears"
    assert event["data"]["by"] == "operator"
    assert event["data"]["command_id"] == command_id
    assert event["data"]["status"] == "queued"  # no MQTT in this test: queued in the table
    assert isinstance(event["data"]["key_id"], int)


def test_query_filters(client: httpx.Client, keys: Keys) -> None:
    command(client, keys, "m1", "disconnect", "a")
    command(client, keys, "m2", "disconnect", "b")
    command(client, keys, "m1", "reconnect", "c")
    h = keys.h("operator")
    get = lambda q: client.get(f"/api/v1/events{q}", headers=h).json()  # noqa: E731
    assert [e["reason"] for e in get("")] == ["a", "b", "c"]
    assert [e["reason"] for e in get("?meter=m1")] == ["a", "c"]
    assert [e["reason"] for e in get("?kind=disconnect")] == ["a", "b"]
    assert [e["reason"] for e in get("?kind=reconnect&meter=m1")] == ["c"]
    assert [e["reason"] for e in get("?exclude=disconnect")] == ["c"]
    assert get("?exclude=disconnect&exclude=reconnect") == []
    assert [e["reason"] for e in get("?order=desc&limit=2")] == ["c", "b"]
    first = get("")[0]
    assert [e["reason"] for e in get(f"?after={first['id']}")] == ["b", "c"]
    assert len(get(f"?since={first['at'].replace('+00:00', 'Z')}")) == 3
    assert get("?since=2999-01-01T00:00:00Z") == []
    r = client.get("/api/v1/events?since=yesterday", headers=h)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "since"]


def test_stream_delivers_live_events(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    with client.stream("GET", STREAM, headers=keys.h("operator")) as r:
        assert r.status_code == 200
        it = frames(r)
        assert "retry" in next(it)  # the stream is open and positioned
        command(client, keys, "m1", "disconnect", "live one")
        # An event written by another process (as ingest does) reaches the stream too.
        other = make_engine(str(api_engine.url))
        try:
            run_tx(other, lambda s: record_event(s, "tamper", meter_id="m2", reason="cover open"))
        finally:
            other.dispose()
        got = events_from(it, 2)
    assert [(e["kind"], e["meter"], e["reason"]) for e in got] == [
        ("disconnect", "m1", "live one"),
        ("tamper", "m2", "cover open"),
    ]


def test_last_event_id_resumes_with_nothing_lost(client: httpx.Client, keys: Keys) -> None:
    for n in range(4):
        command(client, keys, "m1", "disconnect", f"e{n}")
    ids = [e["id"] for e in client.get("/api/v1/events", headers=keys.h("operator")).json()]
    headers = {**keys.h("operator"), "Last-Event-ID": str(ids[1])}
    with client.stream("GET", STREAM, headers=headers) as r:
        it = frames(r)
        replayed = events_from(it, 2)
        command(client, keys, "m1", "reconnect", "after resume")
        live = events_from(it, 1)
    assert [e["id"] for e in replayed] == ids[2:]
    assert live[0]["reason"] == "after resume"
    # The query parameter form (for EventSource URLs) and kind filters.
    url = f"{STREAM}?last_event_id={ids[0]}&kind=reconnect"
    with client.stream("GET", url, headers=keys.h("operator")) as r:
        assert [e["reason"] for e in events_from(frames(r), 1)] == ["after resume"]
    url = f"{STREAM}?last_event_id={ids[0]}&exclude=disconnect"
    with client.stream("GET", url, headers=keys.h("operator")) as r:
        assert [e["reason"] for e in events_from(frames(r), 1)] == ["after resume"]


def test_stream_token_for_browsers(client: httpx.Client, keys: Keys) -> None:
    token = client.post("/api/v1/events/stream-token", headers=keys.h("operator")).json()["token"]
    command(client, keys, "m2", "disconnect", "via token")
    with client.stream("GET", f"{STREAM}?token={token}&last_event_id=0") as r:
        assert r.status_code == 200
        assert events_from(frames(r), 1)[0]["reason"] == "via token"
    body, _, mac = token.rpartition(".")
    forged = f"{body}.{'A' * len(mac)}"
    for bad in (forged, "1.99999999999.x", "garbage"):
        with client.stream("GET", f"{STREAM}?token={bad}") as r:
            assert r.status_code == 401, bad
