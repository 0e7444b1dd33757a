"""Messages and signatures: valid payloads round-trip, bad ones give a one-line reason."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import (
    MAX_CURRENT_A,
    MAX_PAYLOAD,
    Command,
    CreditState,
    EventMessage,
    Status,
    UsageMessage,
    dump,
    parse,
)
from protocol.money import to_major, to_minor
from protocol.schemas import PAYLOADS, schema
from protocol.signing import new_key, signed, verify

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def usage(**changes: object) -> bytes:
    record = {
        "meter": "m1",
        "seq": 1,
        "start": NOW.isoformat(),
        "end": (NOW + timedelta(seconds=10)).isoformat(),
        "import_start": 1000,
        "import_end": 1010,
        "shares": {"gen": 1},
    }
    record.update(changes)
    return json.dumps({"v": 1, "records": [record]}).encode()


def test_usage_round_trip() -> None:
    msg = parse(usage(), UsageMessage)
    assert msg.records[0].energy == 10
    assert parse(dump(msg), UsageMessage) == msg


@pytest.mark.parametrize("value", [0, 0.0, 9.153, 60, MAX_CURRENT_A])
def test_usage_carries_a_mean_current_when_given(value: float) -> None:
    msg = parse(usage(current_mean_a=value), UsageMessage)
    assert msg.records[0].current_mean_a == value
    assert parse(dump(msg), UsageMessage) == msg


def test_a_usage_record_without_a_current_is_one_an_older_agent_sends() -> None:
    msg = parse(usage(), UsageMessage)
    assert msg.records[0].current_mean_a is None
    assert b"current_mean_a" not in dump(msg)  # absent, not null


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b" " * (MAX_PAYLOAD + 1), "exceeds"),
        (usage(seq="one"), "records.0.seq"),
        (usage(seq=0), "records.0.seq"),
        (usage(import_end=10), "import_end is below"),
        (usage(start="2026-11-22T06:00:00"), "records.0.start"),
        (usage(meter="m/1"), "records.0.meter"),
        (usage(shares={"gen": -5}), "records.0.shares.gen"),
        (usage(extra=1), "records.0.extra"),
        (json.dumps({"v": 2, "records": []}).encode(), "v"),
        # instants the rating code cannot convert, or that no meter reports
        (usage(start="0001-01-01T00:00:00+01:00"), "records.0.start: Input should be greater"),
        (usage(end="9999-12-31T23:59:59-01:00"), "records.0.end: Input should be less than 2200"),
        (usage(start="1970-01-01T00:59:59+01:00"), "records.0.start: Input should be greater"),
        (usage(end="2199-12-31T23:59:59-01:00"), "records.0.end: Input should be less than 2200"),
        (usage(start="1969-12-31T23:59:59Z"), "records.0.start"),
        (usage(end="2200-01-01T00:00:00Z"), "records.0.end"),
        (usage(end=(NOW - timedelta(seconds=1)).isoformat()), "end is before start"),
        (usage(end=(NOW + timedelta(days=31, seconds=1)).isoformat()), "exceeds 31 days"),
        (usage(seq=3, merged=4), "merged exceeds seq"),
        (usage(tariff_version=2**53 + 1), "records.0.tariff_version"),
        # integers: beyond any field, beyond Python's own limit; non-finite numbers
        (usage(seq=10**25), "integer of 26 digits (at most 20)"),
        (usage(import_end="HUGE"), "integer of 5000 digits (at most 20)"),
        (usage(tariff_version="MID"), "integer of 4000 digits (at most 20)"),
        (usage(shares={"gen": "HUGE"}), "integer of 5000 digits (at most 20)"),
        (usage(seq="NAN"), "NaN is not a number JSON allows"),
        (usage(seq="INF"), "number 1e999 out of range"),
        (usage(meter="m1\u0000"), "a string with a NUL character"),
        (usage(tariff="flat tariff"), "records.0.tariff"),
        # the mean current (extension, issue 19): a number of amperes, 0 to MAX_CURRENT_A
        (usage(current_mean_a="9.1"), "records.0.current_mean_a: Input should be a valid number"),
        (usage(current_mean_a=True), "records.0.current_mean_a: Input should be a valid number"),
        (usage(current_mean_a=[1.0]), "records.0.current_mean_a"),
        (usage(current_mean_a=-0.001), "records.0.current_mean_a: Input should be greater"),
        (usage(current_mean_a=100_000.5), "records.0.current_mean_a: Input should be less"),
        (usage(current_mean_a=1e308), "records.0.current_mean_a: Input should be less"),
        (usage(current_mean_a="NAN"), "NaN is not a number JSON allows"),
        (usage(current_mean_a="INF"), "number 1e999 out of range"),
    ],
)
def test_bad_usage_is_refused_with_a_reason(payload: bytes, reason: str) -> None:
    payload = (
        payload.replace(b'"HUGE"', b"9" * 5000)
        .replace(b'"MID"', b"-" + b"9" * 4000)
        .replace(b'"NAN"', b"NaN")
        .replace(b'"INF"', b"1e999")
    )
    with pytest.raises(ProtocolError) as info:
        parse(payload, UsageMessage)
    assert reason in info.value.reason
    assert "\n" not in info.value.reason


@pytest.mark.parametrize("model", [EventMessage, Status, Command, CreditState])
def test_a_huge_integer_is_refused_in_every_payload(model: type[BaseModel]) -> None:
    payload = b'{"v": 1, "n": ' + b"9" * 5000 + b"}"
    with pytest.raises(ProtocolError, match=r"^integer of 5000 digits \(at most 20\)$"):
        parse(payload, model)


def test_every_instant_is_bounded() -> None:
    at = "0001-01-01T00:00:00+01:00"
    event = {"id": "e1", "kind": "tamper", "at": at}
    with pytest.raises(ProtocolError, match=r"^events\.0\.at: "):
        parse(json.dumps({"v": 1, "events": [event]}).encode(), EventMessage)
    with pytest.raises(ProtocolError, match=r"^at: "):
        parse(json.dumps({"v": 1, "state": "online", "at": at}).encode(), Status)


def test_event_message() -> None:
    raw = {"v": 1, "events": [{"id": "e1", "kind": "tamper", "at": NOW.isoformat(), "meter": "m1"}]}
    assert parse(json.dumps(raw).encode(), EventMessage).events[0].kind == "tamper"


def test_signature_covers_every_field() -> None:
    key = new_key()
    body = {
        "v": 1,
        "id": "c1",
        "meter": "m1",
        "action": "disconnect",
        "issued_at": NOW.isoformat(),
        "expires_at": (NOW + timedelta(minutes=5)).isoformat(),
        "params": {"a": [1, 2]},
    }
    cmd = signed(body, key)
    assert verify(cmd, key)
    assert Command.model_validate(cmd).action == "disconnect"
    assert not verify({**cmd, "action": "reconnect"}, key)
    assert not verify({**cmd, "params": {"a": [2, 1]}}, key)
    assert not verify(cmd, new_key())
    assert not verify(body, key)


def test_credit_state_carries_a_tariff() -> None:
    state = CreditState.model_validate(
        {
            "balance": 500,
            "as_of_seq": 3,
            "tariff": {"id": "t", "components": [{"provider": "gen", "per_kwh": "0.2"}]},
            "rules": {"low_credit": [200, 100], "emergency_credit": 300},
        }
    )
    assert state.tariff.providers == ("gen",)


def test_topics() -> None:
    assert topics.topic("gw-1", "usage") == "smsa/v1/gw/gw-1/usage"
    assert topics.parse("smsa/v1/gw/gw-1/events") == ("gw-1", "events")
    with pytest.raises(ValueError, match="not an SMSA topic"):
        topics.parse("smsa/v1/gw/gw-1/usage/extra")
    with pytest.raises(ValueError, match="not usable"):
        topics.topic("gw/+", "usage")


@pytest.mark.parametrize("bad", ["1e3", "12.345", "", "abc", "NaN", "1,00", " 1"])
def test_money_strings(bad: str) -> None:
    assert to_minor("12.50", "USD") == 1250
    assert to_major(1250, "USD") == "12.50"
    assert to_minor("1000", "UGX") == 1000
    with pytest.raises(ValueError, match="amount"):
        to_minor(bad, "USD")


def test_published_schemas_match_the_models() -> None:
    folder = Path(__file__).resolve().parents[2] / "docs" / "protocol"
    for name in PAYLOADS:
        published = (folder / f"{name}.schema.json").read_text()
        assert published == schema(name), f"run: python -m protocol.schemas docs/protocol ({name})"
