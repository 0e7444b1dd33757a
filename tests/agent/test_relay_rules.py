"""The pure relay and tamper steps: state in, state and effects out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.relay_rules import (
    OFFLINE_AFTER,
    BusFailed,
    Effect,
    Emit,
    NoRelay,
    ReadBack,
    Reading,
    RelayState,
    Switch,
    availability,
    confirmed,
    enforce,
    observe,
    switched,
    want,
    withdraw,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str = "why"
    rule: str = "exhausted"


def at(n: int) -> datetime:
    return T0 + timedelta(seconds=n)


def kinds(effects: list[Effect]) -> list[str]:
    return [e.kind if isinstance(e, Emit) else f"switch {'on' if e.on else 'off'}" for e in effects]


def rules_of(effects: list[Effect]) -> list[object]:
    return [e.data.get("rule") for e in effects if isinstance(e, Emit) and e.kind == "tamper"]


def run(state: RelayState, readings: list[Reading]) -> tuple[RelayState, list[list[Effect]]]:
    out = []
    for reading in readings:
        state, effects = observe(state, reading)
        out.append(effects)
    return state, out


# -- observe ----------------------------------------------------------------------------------


def test_the_relay_is_reported_when_first_read_and_when_it_changes() -> None:
    readings = [Reading(at(n), 100, relay) for n, relay in enumerate([None, True, True, False])]
    _, effects = run(RelayState(), readings)
    assert [kinds(e) for e in effects] == [[], ["relay"], [], ["relay"]]
    assert [e[0].data for e in effects if e] == [{"state": "on"}, {"state": "off"}]  # type: ignore[union-attr]


def test_energy_while_off_is_tamper_once_until_the_relay_reads_on() -> None:
    state = RelayState(reported=False)
    readings = [
        Reading(at(0), 100, False),
        Reading(at(1), 105, False),  # flowing: tamper
        Reading(at(2), 110, False),  # still flowing: already reported
        Reading(at(3), 110, True),
        Reading(at(4), 110, False),
        Reading(at(5), 120, False),  # a new episode
    ]
    _, effects = run(state, readings)
    assert [rules_of(e) for e in effects] == [
        [],
        ["energy_while_off"],
        [],
        [],
        [],
        ["energy_while_off"],
    ]
    tamper = effects[1][0]
    assert isinstance(tamper, Emit) and tamper.data == {
        "rule": "energy_while_off",
        "from_wh": 100,
        "to_wh": 105,
    }


def test_a_relay_found_otherwise_is_tamper_and_is_switched_back_once() -> None:
    state = RelayState(wanted=False, cause="credit", switched_at=at(0), reported=False)
    state, effects = observe(state, Reading(at(0), 100, True))  # the switch's own moment
    assert kinds(effects) == ["relay"]
    state, effects = observe(state, Reading(at(1), 100, True))
    assert kinds(effects) == ["tamper", "switch off"]
    assert rules_of(effects) == ["relay_mismatch"]
    assert effects[1] == Switch(False, "credit", quiet=True, rebase=False)
    state, effects = observe(state, Reading(at(2), 100, True))  # still on: reported already
    assert effects == []
    state, effects = observe(state, Reading(at(3), 100, False))  # resolved
    assert kinds(effects) == ["relay"] and not state.tamper_relay
    _, effects = observe(state, Reading(at(4), 100, True))  # found on again: a new tamper
    assert rules_of(effects) == ["relay_mismatch"]


def test_a_switch_that_failed_on_the_bus_is_retried_without_tamper() -> None:
    state = RelayState(wanted=False, cause="credit", unconfirmed=True, reported=True)
    _, effects = observe(state, Reading(at(1), 100, True))
    [retry] = effects
    assert retry == Switch(
        False,
        "credit",
        quiet=True,
        rebase=False,
        then=(Emit("disconnect", "switched on a later attempt", {"cause": "credit"}),),
    )


def test_a_withdrawn_command_wants_what_was_wanted_before_and_puts_a_stray_write_back() -> None:
    before = RelayState(wanted=True, cause="credit", reported=True)
    tried = want(before, Switch(False, "command"))
    failed, _ = switched(tried, Switch(False, "command"), BusFailed("no answer"))
    state = withdraw(failed, before)
    assert (state.wanted, state.cause, state.unconfirmed) == (True, "credit", True)
    # the write reached the relay unanswered: switched back, no tamper
    state, effects = observe(state, Reading(at(1), 100, False))
    assert [(type(e).__name__, getattr(e, "on", None)) for e in effects] == [
        ("Switch", True), ("Emit", None)]  # fmt: skip
    assert not rules_of(effects)
    # it reads as wanted: settled; a later change is tamper again
    state, _ = observe(state, Reading(at(2), 100, True))
    assert not state.unconfirmed
    _, effects = observe(state, Reading(at(3), 100, False))
    assert rules_of(effects) == ["relay_mismatch"]


def test_nothing_is_switched_when_nothing_is_wanted() -> None:
    _, effects = observe(RelayState(reported=True), Reading(at(1), 100, True))
    assert effects == []


states = st.builds(
    RelayState,
    wanted=st.none() | st.booleans(),
    cause=st.sampled_from(["", "credit", "command"]),
    unconfirmed=st.booleans(),
    tamper_relay=st.booleans(),
)
reading_lists = st.lists(
    st.tuples(st.integers(0, 3), st.none() | st.booleans()), min_size=1, max_size=30
)


@given(states, reading_lists)
def test_observe_properties(start: RelayState, steps: list[tuple[int, bool | None]]) -> None:
    readings, wh = [], 1000
    for n, (delta, relay) in enumerate(steps):
        wh += delta
        readings.append(Reading(at(n + 1), wh, relay))
    state, effects = run(start, readings)
    assert state.prev_wh == readings[-1].wh and state.prev_relay == readings[-1].relay_on
    # relay events: exactly the changes of the relay as read (None: not read)
    reported = [
        e.data["state"] for es in effects for e in es if isinstance(e, Emit) and e.kind == "relay"
    ]
    read = [r.relay_on for r in readings if r.relay_on is not None]
    changes = [v for i, v in enumerate(read) if (read[i - 1] if i else start.reported) != v]
    assert reported == ["on" if v else "off" for v in changes]
    # every switch restores what is wanted, quietly, and never without a wanted state
    switches = [e for es in effects for e in es if isinstance(e, Switch)]
    assert all(s.on == start.wanted and s.quiet and not s.rebase for s in switches)
    assert start.wanted is not None or not switches
    # a mismatch is reported once until the relay reads as wanted (or is not read); after a
    # switch that failed on the bus it is retried instead, until a reading as wanted settles it
    open_tamper, unconfirmed = start.tamper_relay, start.unconfirmed
    for reading, es in zip(readings, effects, strict=True):
        if "relay_mismatch" in rules_of(es):
            assert not open_tamper and not unconfirmed
            open_tamper = True
        elif reading.relay_on is None or reading.relay_on == start.wanted:
            open_tamper = False
        if reading.relay_on is not None and reading.relay_on == start.wanted:
            unconfirmed = False
    assert state.unconfirmed == unconfirmed


# -- enforce ----------------------------------------------------------------------------------


def test_credit_disconnects_once_and_reconnects_only_its_own_cut() -> None:
    [cut] = enforce(RelayState(), Decision("disconnect"))
    assert isinstance(cut, Switch) and (cut.on, cut.cause, cut.quiet) == (False, "credit", False)
    assert cut.then == (Emit("disconnect", "why", {"rule": "exhausted", "cause": "credit"}),)
    assert enforce(RelayState(wanted=False, cause="command"), Decision("disconnect")) == []
    assert enforce(RelayState(wanted=False, cause="command"), Decision("reconnect")) == []
    assert enforce(RelayState(wanted=True, cause="credit"), Decision("reconnect")) == []
    [back] = enforce(RelayState(wanted=False, cause="credit"), Decision("reconnect", rule="topup"))
    assert isinstance(back, Switch) and back.on and back.then[0].kind == "reconnect"
    assert enforce(RelayState(), Decision("prompt", rule="low")) == [
        Emit("low_credit", "why", {"rule": "low"})
    ]
    assert enforce(RelayState(), Decision("none")) == []


# -- switch outcomes --------------------------------------------------------------------------


def test_switch_outcomes() -> None:
    sw = Switch(False, "credit", then=(Emit("disconnect", "why"),))
    base = want(RelayState(prev_wh=5, prev_relay=True, unconfirmed=True), sw)
    assert (base.wanted, base.cause) == (False, "credit")

    state, effects = switched(base, sw, ReadBack(False, at(1)))
    assert effects == [Emit("disconnect", "why")] and confirmed(sw, ReadBack(False, at(1)))
    assert (state.unconfirmed, state.switched_at, state.prev_relay, state.prev_wh) == (
        False, at(1), False, None,
    )  # fmt: skip

    state, effects = switched(base, sw, ReadBack(True, at(1)))
    assert rules_of(effects) == ["relay_readback"] and state.tamper_relay
    assert not confirmed(sw, ReadBack(True, at(1)))

    state, effects = switched(base, sw, BusFailed("timeout"))
    assert kinds(effects) == ["relay_fault"] and state.unconfirmed
    assert "timeout" in effects[0].reason  # type: ignore[union-attr]
    state, effects = switched(base, replace(sw, quiet=True), BusFailed("timeout"))
    assert effects == [] and state.unconfirmed

    state, effects = switched(base, sw, NoRelay())
    assert kinds(effects) == ["relay_fault"] and state == base

    kept = switched(base, replace(sw, rebase=False), ReadBack(False, at(1)))[0]
    assert (kept.prev_relay, kept.prev_wh) == (True, 5)


# -- availability -----------------------------------------------------------------------------


def test_offline_after_repeated_failures_then_online() -> None:
    state = RelayState()
    for failures in range(1, OFFLINE_AFTER):
        state, effects = availability(state, False, failures, "timeout")
        assert effects == []
    state, effects = availability(state, False, OFFLINE_AFTER, "timeout")
    assert effects == [Emit("meter_offline", "timeout", {"polls": OFFLINE_AFTER})]
    state, effects = availability(state, False, OFFLINE_AFTER + 1, "timeout")
    assert effects == []
    state, effects = availability(state, True, 0)
    assert effects == [Emit("meter_online", "answers again")] and not state.offline
    assert availability(state, True, 0) == (state, [])
