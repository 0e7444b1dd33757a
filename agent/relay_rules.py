"""What a meter's relay should do and what to report, as pure steps: no bus, no database, no clock.

Each function takes a meter's :class:`RelayState` (what the engine remembers between readings)
and returns the next state and a list of effects for the engine to carry out, in order:

- :class:`Emit`: put an event of ``kind`` about this meter in the outbox;
- :class:`Switch`: switch the relay (through the bus owner), read it back, then hand the outcome
  to :func:`switched`, whose effects take the place of the switch in the list.

Steps:

- :func:`availability` after every poll: ``meter_offline`` after ``OFFLINE_AFTER`` failed
  polls in a row, ``meter_online`` when it answers again.
- :func:`observe` after every good reading. Tamper ``energy_while_off``: the register advanced
  between two polls that both read the relay off (once, until the relay reads on again). Tamper
  ``relay_mismatch``: the relay reads otherwise than the agent switched it (after the switch
  finished), and the agent switches it back (quietly; once, until it reads as wanted again). A
  switch that failed on the bus is retried instead (no tamper: nobody touched the relay), and
  its ``disconnect``/``reconnect`` event follows when it gets through. A ``relay`` event reports
  the relay whenever it is first read, or read in another state.
- :func:`enforce` after every credit decision: ``disconnect`` opens the relay unless it is
  already wanted open, ``reconnect`` closes it only if the credit rules opened it, ``prompt`` is
  a ``low_credit`` event.
- :func:`want`, then :func:`switched`: a switch records what is wanted before it is tried; its
  outcome (:class:`ReadBack`, :class:`BusFailed`, :class:`NoRelay`) decides the events: the
  switch's own ``then`` events only when the relay read back the new state, tamper
  ``relay_readback`` when it read back the other one, ``relay_fault`` when the bus failed
  (unless ``quiet``) or the meter has no relay.
- :func:`withdraw` after an operator's command whose switch did not read back: it is reported
  as failed, so it leaves no wish behind (what was wanted before is wanted again; a write that
  reached the relay unanswered is put back quietly by the retry in :func:`observe`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

OFFLINE_AFTER = 3  # failed polls in a row before a meter_offline event


@dataclass(frozen=True)
class RelayState:
    """One meter's relay and tamper memory (the wanted state is also persisted by the engine)."""

    wanted: bool | None = None  # True = supply on; None: the agent never switched it
    cause: str = ""  # credit | command
    switched_at: datetime | None = None  # when the last switch read back
    unconfirmed: bool = False  # the last switch did not get through the bus
    prev_wh: int | None = None  # the previous reading (None: do not compare)
    prev_relay: bool | None = None
    tamper_flow: bool = False  # energy_while_off reported, the relay still reads off
    tamper_relay: bool = False  # relay_mismatch / relay_readback reported, not resolved yet
    reported: bool | None = None  # the relay state last sent as a ``relay`` event
    offline: bool = False


@dataclass(frozen=True)
class Reading:
    """A good poll of the meter: when, the import register (Wh), the relay as read (if read)."""

    at: datetime
    wh: int
    relay_on: bool | None


@dataclass(frozen=True)
class Emit:
    kind: str
    reason: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Switch:
    on: bool
    cause: str
    quiet: bool = False  # no relay_fault event when the bus fails (a retry or a switch-back)
    rebase: bool = True  # compare energy from the next poll (False: the reading it follows)
    then: tuple[Emit, ...] = ()  # emitted once the relay read back ``on``


Effect = Emit | Switch


@dataclass(frozen=True)
class ReadBack:
    on: bool
    at: datetime


@dataclass(frozen=True)
class BusFailed:
    error: str


@dataclass(frozen=True)
class NoRelay:
    pass


Outcome = ReadBack | BusFailed | NoRelay


class Decision(Protocol):
    """A credit decision (``protocol.rules.Decision``)."""

    @property
    def action(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def rule(self) -> str: ...


def onoff(on: bool | None) -> str:
    return "unknown" if on is None else ("on" if on else "off")


def availability(
    state: RelayState, ok: bool, failures: int, error: str = ""
) -> tuple[RelayState, list[Effect]]:
    """After a poll: ``ok`` whether the meter answered, ``failures`` failed polls in a row."""
    if not ok:
        if not state.offline and failures >= OFFLINE_AFTER:
            return replace(state, offline=True), [
                Emit("meter_offline", error, {"polls": OFFLINE_AFTER})
            ]
        return state, []
    if state.offline:
        return replace(state, offline=False), [Emit("meter_online", "answers again")]
    return state, []


def observe(state: RelayState, reading: Reading) -> tuple[RelayState, list[Effect]]:
    """After a good reading: tamper checks, a switch-back or retry, the ``relay`` report."""
    effects: list[Effect] = []
    relay = reading.relay_on
    flowing = (
        state.prev_relay is False
        and relay is False
        and state.prev_wh is not None
        and reading.wh > state.prev_wh
    )
    if flowing and not state.tamper_flow:
        data = {"rule": "energy_while_off", "from_wh": state.prev_wh, "to_wh": reading.wh}
        effects.append(Emit("tamper", "energy flowing while the relay reads off", data))
    tamper_flow = flowing or (state.tamper_flow and relay is False)
    tamper_relay = state.tamper_relay
    wanted = state.wanted
    mismatch = (
        wanted is not None
        and relay is not None
        and relay != wanted
        and (state.switched_at is None or reading.at > state.switched_at)
    )
    if mismatch and wanted is not None and state.unconfirmed:
        # the last switch failed on the bus: try again, no tamper (nobody touched it)
        kind = "reconnect" if wanted else "disconnect"
        done = Emit(kind, "switched on a later attempt", {"cause": state.cause})
        effects.append(Switch(wanted, state.cause, quiet=True, rebase=False, then=(done,)))
    elif mismatch and wanted is not None and not tamper_relay:
        reason = f"relay reads {onoff(relay)} but was switched {onoff(wanted)}"
        effects.append(Emit("tamper", reason, {"rule": "relay_mismatch"}))
        tamper_relay = True
        effects.append(Switch(wanted, state.cause, quiet=True, rebase=False))
    elif not mismatch:
        tamper_relay = False
    # a reading as wanted settles a switch that failed on the bus (later changes are tamper)
    unconfirmed = state.unconfirmed and not (relay is not None and relay == wanted)
    reported = state.reported
    if relay is not None and relay != reported:
        reported = relay
        effects.append(Emit("relay", f"relay reads {onoff(relay)}", {"state": onoff(relay)}))
    new = replace(
        state,
        prev_wh=reading.wh,
        prev_relay=relay,
        tamper_flow=tamper_flow,
        tamper_relay=tamper_relay,
        unconfirmed=unconfirmed,
        reported=reported,
    )
    return new, effects


def enforce(state: RelayState, decision: Decision) -> list[Effect]:
    """What a credit decision asks for (the state changes only through the switch)."""
    data = {"rule": decision.rule, "cause": "credit"}
    if decision.action == "disconnect":
        if state.wanted is not False:
            done = Emit("disconnect", decision.reason, data)
            return [Switch(False, "credit", then=(done,))]
    elif decision.action == "reconnect":
        if state.wanted is False and state.cause == "credit":
            done = Emit("reconnect", decision.reason, data)
            return [Switch(True, "credit", then=(done,))]
    elif decision.action == "prompt":  # the rules prompt once per crossing
        return [Emit("low_credit", decision.reason, {"rule": decision.rule})]
    return []


def want(state: RelayState, switch: Switch) -> RelayState:
    """Before a switch is tried: what is wanted from now on, whatever the outcome."""
    return replace(state, wanted=switch.on, cause=switch.cause)


def withdraw(state: RelayState, before: RelayState) -> RelayState:
    """After an operator's switch that did not read back (reported to the hub as failed): what
    was wanted ``before`` it is wanted again. ``unconfirmed`` stays as the switch left it, so a
    write that reached the relay without an answer is switched back without a tamper event."""
    return replace(state, wanted=before.wanted, cause=before.cause)


def switched(
    state: RelayState, switch: Switch, outcome: Outcome
) -> tuple[RelayState, list[Effect]]:
    """After a switch was tried (see the module docstring)."""
    if isinstance(outcome, NoRelay):
        return state, [Emit("relay_fault", "this meter has no relay to switch")]
    if isinstance(outcome, BusFailed):
        failed = replace(state, unconfirmed=True)
        if switch.quiet:
            return failed, []
        reason = f"switching {onoff(switch.on)} failed: {outcome.error}"
        return failed, [Emit("relay_fault", reason)]
    new = replace(state, unconfirmed=False, switched_at=outcome.at)
    if switch.rebase:  # energy may have flowed between the last poll and the switch
        new = replace(new, prev_relay=outcome.on, prev_wh=None)
    if outcome.on != switch.on:
        reason = f"relay read back {onoff(outcome.on)} after switching {onoff(switch.on)}"
        return replace(new, tamper_relay=True), [Emit("tamper", reason, {"rule": "relay_readback"})]
    return new, list(switch.then)


def confirmed(switch: Switch, outcome: Outcome) -> bool:
    """The relay read back what the switch asked for."""
    return isinstance(outcome, ReadBack) and outcome.on == switch.on
