"""The command gate: only signed, fresh, known, first-time commands get through."""

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.commands import MAX_COMMAND_BYTES, CommandGate, credit_state
from agent.errors import CommandRejected
from protocol.messages import CreditState, Event
from protocol.signing import new_key, signed
from tests.agent.helpers import Collector, Procs, agent_config, meters, publish, tcp_bus
from tests.agent.helpers import command as command_payload
from tests.conftest import Broker
from tests.support import free_port, wait_for

NOW = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
KEY = new_key()


def command(key: str = KEY, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "id": "cmd-1",
        "meter": "m1",
        "action": "disconnect",
        "issued_at": (NOW - timedelta(seconds=5)).isoformat(),
        "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
        "reason": "credit exhausted",
    }
    body.update(changes)
    return signed(body, key)


def raw(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


@pytest.fixture
def gate(tmp_path: Path) -> Any:
    g = CommandGate(KEY, tmp_path / "agent.db")
    yield g
    g.close()


def rejected(gate: CommandGate, payload: bytes, now: datetime = NOW) -> str:
    with pytest.raises(CommandRejected) as info:
        gate.accept(payload, now)
    assert "\n" not in info.value.reason
    return info.value.reason


def test_a_good_command_is_accepted_once(gate: CommandGate) -> None:
    payload = raw(command())
    cmd = gate.accept(payload, NOW)
    assert (cmd.id, cmd.meter, cmd.action) == ("cmd-1", "m1", "disconnect")
    assert rejected(gate, payload, NOW + timedelta(seconds=1)) == "replayed command id"


def test_a_stale_command_never_undoes_a_newer_one_of_its_group(gate: CommandGate) -> None:
    """A disconnect issued before a reconnect that was already applied (delivered late, after
    the broker came back) is refused; another group's older command is not affected."""
    early = NOW - timedelta(minutes=2)
    later = NOW - timedelta(minutes=1)
    reconnect = command(id="c-reconnect", action="reconnect", issued_at=later.isoformat())
    stale = command(id="c-disconnect", action="disconnect", issued_at=early.isoformat())
    prompt = command(id="c-prompt", action="prompt", issued_at=early.isoformat())
    assert gate.accept(raw(reconnect), NOW).action == "reconnect"
    assert rejected(gate, raw(stale)) == "superseded by a newer relay command"
    assert gate.accept(raw(prompt), NOW).action == "prompt"
    newer = command(id="c-disconnect-2", issued_at=NOW.isoformat())
    assert gate.accept(raw(newer), NOW).action == "disconnect"
    # the refused stale one did not consume its id: still refused for its age, not as a replay
    assert rejected(gate, raw(stale)) == "superseded by a newer relay command"


def test_replay_survives_a_restart(tmp_path: Path) -> None:
    payload = raw(command())
    first = CommandGate(KEY, tmp_path / "a.db")
    first.accept(payload, NOW)
    first.close()
    second = CommandGate(KEY, tmp_path / "a.db")
    assert rejected(second, payload) == "replayed command id"
    second.close()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (raw(command(key=new_key())), "bad signature"),
        (raw({**command(), "meter": "m2"}), "bad signature"),
        (raw({k: v for k, v in command().items() if k != "sig"}), "unsigned command"),
        (b'{"id": "cmd-1", "action": ', "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"\xff\xfe", "not JSON"),
        (raw(command(action="explode")), "unknown action 'explode'"),
        (raw(command(expires_at=NOW.isoformat())), "expired at"),
        (raw(command(issued_at=(NOW + timedelta(hours=1)).isoformat())), "in the future"),
        (raw(command(expires_at="tomorrow")), "invalid command: expires_at"),
        (raw(command(extra_field=1)), "invalid command: extra_field"),
        (raw(command(action="credit", params={"state": {"balance": 5}})), "invalid credit state"),
        (b" " * (MAX_COMMAND_BYTES + 1), "exceeds"),
        (
            raw(command(params={"n": 0})).replace(b'"n": 0', b'"n": ' + b"9" * 5000),
            "integer of 5000 digits",
        ),
        (raw(command(params={"n": 10**3999})), "integer of 4000 digits (at most 20)"),
        (raw(command(params={"n": 0})).replace(b'"n": 0', b'"n": NaN'), "NaN is not a number"),
        (raw(command(params={"n": 0})).replace(b'"n": 0', b'"n": 1e999'), "out of range"),
    ],
    ids=[
        "wrong-key",
        "tampered",
        "unsigned",
        "truncated-json",
        "not-object",
        "not-utf8",
        "unknown-action",
        "expired",
        "future",
        "bad-date",
        "extra-field",
        "bad-credit",
        "oversized",
        "int-over-python-limit",
        "int-under-python-limit",
        "nan",
        "float-overflow",
    ],
)
def test_bad_commands_are_rejected_without_consuming_the_id(
    gate: CommandGate, payload: bytes, reason: str
) -> None:
    assert reason in rejected(gate, payload)
    # the id is still free: the genuine command with that id is accepted afterwards
    assert gate.accept(raw(command()), NOW).id == "cmd-1"


def test_credit_commands_carry_a_credit_state(gate: CommandGate) -> None:
    state = {
        "balance": 1250,
        "as_of_seq": 42,
        "tariff": {"id": "flat", "components": [{"provider": "gen", "per_kwh": "0.2"}]},
    }
    cmd = gate.accept(raw(command(id="c-2", action="credit", params={"state": state})), NOW)
    assert credit_state(cmd).balance == 1250
    bare = gate.accept(raw(command(id="c-3", action="credit", params=state)), NOW)
    assert credit_state(bare).as_of_seq == 42


def test_seen_ids_are_pruned_after_expiry(gate: CommandGate) -> None:
    gate.accept(raw(command()), NOW)
    later = NOW + timedelta(days=2)
    fresh = command(
        id="cmd-2",
        issued_at=later.isoformat(),
        expires_at=(later + timedelta(minutes=1)).isoformat(),
    )
    gate.accept(raw(fresh), later)
    ids = [r[0] for r in gate._store.conn.execute("SELECT id FROM command_seen").fetchall()]
    assert ids == ["cmd-2"]
    # the old command is refused as expired even though its id is forgotten
    assert "expired" in rejected(gate, raw(command()), later)


def test_concurrent_deliveries_are_accepted_exactly_once(tmp_path: Path) -> None:
    gates = [CommandGate(KEY, tmp_path / "agent.db") for _ in range(4)]
    payload = raw(command(id="race"))
    outcomes: list[str] = []
    lock = threading.Lock()

    def deliver(g: CommandGate) -> None:
        try:
            g.accept(payload, NOW)
            result = "accepted"
        except CommandRejected as exc:
            result = exc.reason
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=deliver, args=(g,)) for g in gates for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in gates:
        g.close()
    assert sorted(outcomes) == ["accepted"] + ["replayed command id"] * 11


def test_a_bad_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="command_key"):
        CommandGate("zz", tmp_path / "x.db")


def test_commands_built_by_the_hub_pass_the_gate(gate: CommandGate) -> None:
    """Contract check: what hub.control signs, the agent accepts, and the credit state survives."""
    from hub.control.commands import build_command, credit_command  # noqa: PLC0415

    state = CreditState.model_validate(
        {
            "balance": 1250,
            "as_of_seq": 3,
            "tariff": {"id": "t", "components": [{"provider": "g", "per_kwh": "0.1234"}]},
            "rules": {
                "low_credit": [500],
                "friendly": [{"start": "16:00", "end": "08:00"}],
                "holidays": ["2026-12-25"],
            },
            "carry": {"g": "1/3"},
        }
    )
    now = datetime.now(UTC)
    credit = gate.accept(raw(credit_command(KEY, "m1", state, now=now)), now)
    assert credit_state(credit) == state
    cut = gate.accept(raw(build_command(KEY, "m1", "disconnect", reason="ops", now=now)), now)
    assert (cut.action, cut.reason) == ("disconnect", "ops")


@pytest.mark.slow
def test_the_agent_reports_a_command_with_a_huge_integer(
    tmp_path: Path, mosquitto: Broker, procs: Procs, collector: Collector
) -> None:
    """Issue 14 item 6, at a running agent: such a command used to make the gate raise a plain
    ValueError (Python's 4,300-digit limit), logged, with no ``command_rejected`` event."""
    key = new_key()
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(free_port()), meters([1]), key=key)
    agent = procs.agent(config)
    over = command_payload(key, "m1", "disconnect", params={"n": 0}, cid="over")
    over = over.replace(b'"n": 0', b'"n": ' + b"9" * 5000)
    under = command_payload(key, "m1", "disconnect", params={"n": 10**3999}, cid="under")

    def rejected(reason: str) -> list[Event]:
        return [e for e in collector.events_of("command_rejected") if e.reason == reason]

    def delivered(payload: bytes, reason: str) -> bool:  # published until the agent listens
        publish(mosquitto.port, "smsa/v1/gw/gw-t/cmd", payload)
        try:
            wait_for(lambda: rejected(reason), timeout=1.0)
        except AssertionError:
            return False
        return True

    wait_for(lambda: delivered(over, "integer of 5000 digits (at most 20)"), timeout=30)
    wait_for(lambda: delivered(under, "integer of 4000 digits (at most 20)"), timeout=10)
    assert rejected("integer of 4000 digits (at most 20)")[0].data["command"] == "under"
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.text()
