"""The engine: the one thread that moves data between the bus owners, the store and the uplink.

Threads: one :class:`BusPoller` per bus (the only code that touches that bus), the uplink's own
threads, and the engine (the thread that calls :meth:`Engine.run`). Pollers and the uplink only
put work on the engine's queue. For each reading the engine meters it (a closed interval is
priced and stored in ONE transaction: the meter's state, the credit charge and the outbox rows),
runs the pure relay and tamper steps (``agent.relay_rules``) and carries out their effects
(events into the outbox, switches through the bus owner), then lets the credit rules decide.
Commands go to :class:`agent.command_handler.CommandHandler`; the status file is
``agent.status``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError

from agent.command_handler import CommandHandler, GateLike
from agent.errors import AgentError, RelayError
from agent.events import new_event
from agent.metering.intervals import Closed, MeterState, Point, Reset, step
from agent.metering.store import MeteringStore, hand_over_journal
from agent.modbus.bus import ModbusLine
from agent.modbus.poller import BusPoller, Reading, meter_point
from agent.relay_rules import (
    BusFailed,
    Decision,
    Effect,
    Emit,
    NoRelay,
    Outcome,
    ReadBack,
    RelayState,
    Switch,
    availability,
    confirmed,
    enforce,
    observe,
    onoff,
    switched,
    want,
    withdraw,
)
from agent.relay_rules import Reading as RelayReading
from agent.resume import plan
from agent.runtime import MeterRuntime
from agent.sdnotify import Notifier
from agent.settings import AgentSettings
from agent.snapshot import bus_health, snapshot
from agent.status import write_atomic
from agent.store import AgentStore
from protocol.messages import CreditState, Event, ResumePoint, UsageRecord
from protocol.tokens import TokenRejectedError

if TYPE_CHECKING:
    from agent.tokens import Applied, TokenDesk

log = logging.getLogger(__name__)

RELAY_WAIT_S = 15.0


class OutboxLike(Protocol):
    def add_usage(self, record: UsageRecord) -> Any: ...
    def add_event(self, event: Event) -> Any: ...
    def first_usage(self, meter: str) -> UsageRecord | None: ...
    def renumber(self, meter: str, shift: int) -> int: ...
    def depth(self) -> int: ...
    def unconfirmed(self) -> int: ...


class CreditLike(Protocol):
    def price(self, record: UsageRecord) -> UsageRecord: ...
    def apply(
        self, meter_id: str, state: CreditState, issued_at: datetime | None = None
    ) -> Any: ...
    def decide(self, meter_id: str, now: datetime) -> Decision: ...
    def set_relay(
        self, meter_id: str, relay: Any, by_rules: bool = False, since: datetime | None = None
    ) -> None: ...
    def renumber(self, meter_id: str, shift: int, lowest: int) -> None: ...


class Engine:
    """The agent's loop; :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self,
        settings: AgentSettings,
        store: AgentStore,
        outbox: OutboxLike,
        credit: CreditLike,
        gate: GateLike,
        *,
        notifier: Notifier | None = None,
        tokens: TokenDesk | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.store = store
        self.outbox = outbox
        self.credit = credit
        self.notifier = notifier or Notifier()
        self.metering = MeteringStore(store)
        self.commands = CommandHandler(gate, credit, self)
        self.uplink: Any = None
        self._status_sent = time.monotonic()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self.pollers: list[BusPoller] = []
        self.meters: dict[str, MeterRuntime] = {}
        self.states: dict[str, MeterState] = {}
        self.records = 0
        self.events = 0
        wanted = self.metering.relays()
        saved = self.metering.states()
        for bus in settings.buses:
            points = [meter_point(m, bus, settings.register_dirs)
                      for m in settings.meters_on(bus.name)]  # fmt: skip
            if not points:
                continue
            poller = BusPoller(bus, points, settings.timing.poll_interval_s, self._on_reading)
            self.pollers.append(poller)
            for point in points:
                rt = MeterRuntime(point, poller)
                if point.id in wanted:
                    on, cause = wanted[point.id]
                    rt.relay = RelayState(wanted=on, cause=cause)
                    point.watch_relay = on is False
                self.meters[point.id] = rt
                self.states[point.id] = saved.get(point.id, MeterState(point.id))

    # ------------------------------------------------------------------ lifecycle
    def on_command(self, payload: bytes) -> None:
        """Called by the uplink (its thread): hand the command to the engine."""
        self._queue.put(("command", payload))

    def submit_token(self, meter: str, code: str) -> Future[Applied]:
        """Called by the local endpoint (its thread): redeem ``code`` on the engine's thread;
        the future holds the ``Applied`` or the ``TokenRejectedError``."""
        done: Future[Applied] = Future()
        self._queue.put(("token", (meter, code, done)))
        return done

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop", None))

    def run(self) -> None:
        """Take over an older agent's journal, start the pollers, then meter and enforce until
        :meth:`stop`."""
        try:
            hand_over_journal(self.store, self.outbox)
        except Exception:
            log.exception("an older agent's journal (agent_pending) stays for the next start")
        for poller in self.pollers:
            poller.start()
        self.notifier.notify("READY=1")
        log.info(
            "agent %s running: %d meters on %d buses",
            self.settings.gateway_id,
            len(self.meters),
            len(self.pollers),
        )
        tick = min(self.settings.status.interval_s, 5.0)
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                timeout = max(0.0, next_tick - time.monotonic())
                try:
                    kind, item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    kind, item = "tick", None
                try:
                    self._handle(kind, item)
                except Exception:
                    log.exception("engine: handling %s failed", kind)
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + tick
                    self._tick()
        finally:
            self.notifier.notify("STOPPING=1")
            for poller in self.pollers:
                poller.stop()
            for poller in self.pollers:
                poller.join(10)
            self._drain_readings()
            # the last readings too (they are otherwise saved only with closed intervals), so
            # a register reset while the agent is stopped closes the interval where it was left
            self.metering.save(list(self.states.values()))
            self._write_status()

    def _handle(self, kind: str, item: Any) -> None:
        if kind == "reading":
            self._reading(item)
        elif kind == "command":
            self.commands.handle(item, datetime.now(UTC))
        elif kind == "token":
            self._token(*item)

    def _token(self, meter: str, code: str, done: Future[Applied]) -> None:
        """Apply a token, then let the rules reconnect the meter if the credit allows."""
        try:
            if self.tokens is None or meter not in self.meters:
                raise TokenRejectedError("invalid", f"no meter {meter!r} on this gateway")
            applied = self.tokens.redeem(meter, code)
        except TokenRejectedError as exc:
            done.set_exception(exc)
            return
        except Exception as exc:
            done.set_exception(exc)
            raise
        self.events += 1
        self.enforce(meter, datetime.now(UTC))
        done.set_result(applied)

    def _drain_readings(self) -> None:
        """Meter the readings that arrived before the pollers stopped (nothing is left behind)."""
        while True:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                return
            if kind == "reading":
                try:
                    self._reading(item)
                except Exception:
                    log.exception("engine: final reading failed")

    def _tick(self) -> None:
        self._write_status()
        now = time.monotonic()
        if self.uplink is not None and now - self._status_sent >= self.settings.status.publish_s:
            self._status_sent = now
            self.uplink.publish_status()
        if self._healthy():
            self.notifier.notify("WATCHDOG=1")

    def _healthy(self) -> bool:
        """Every bus owner finished a cycle recently (a stuck poll loop starves the watchdog)."""
        now = time.monotonic()
        limit = max(30.0, 3 * self.settings.timing.poll_interval_s)
        for poller in self.pollers:
            worst = sum(m.timeout_s * (poller.bus.retries + 1) * 2 for m in poller.meters)
            if not poller.is_alive() or now - poller.last_cycle > limit + worst:
                return False
        return True

    # ------------------------------------------------------------------ readings
    def _on_reading(self, reading: Reading) -> None:
        self._queue.put(("reading", reading))

    def _reading(self, reading: Reading) -> None:
        rt = self.meters[reading.meter]
        rt.relay, effects = availability(rt.relay, reading.ok, rt.point.failures, reading.error)
        self._carry_out(rt, effects)
        if reading.import_wh is None:
            return
        self._meter(reading.meter, Point(reading.at, reading.import_wh, reading.current_a))
        observed = RelayReading(reading.at, reading.import_wh, reading.relay_on)
        rt.relay, effects = observe(rt.relay, observed)
        self._carry_out(rt, effects)
        self.enforce(reading.meter, reading.at)

    def _meter(self, meter: str, point: Point) -> None:
        """Feed the interval builder; a closed interval is ONE transaction: the meter's new
        state, its pricing (credit charge) and its outbox rows. Not stored (an error): the state
        stays, and the next reading closes the same interval again under the same seq."""
        state, outputs = step(self.states[meter], point, self.settings.timing.report_interval_s)
        if not outputs:
            self.states[meter] = state
            return
        events: list[Event] = []
        for out in outputs:
            if isinstance(out, Reset):
                log.warning(
                    "meter %s: register went from %d to %d Wh", meter, out.old.wh, out.new.wh
                )
                events.append(
                    new_event(
                        "register_reset",
                        meter,
                        f"import register went from {out.old.wh} to {out.new.wh} Wh",
                        old_wh=out.old.wh,
                        new_wh=out.new.wh,
                        old_at=out.old.at.isoformat(),
                        new_at=out.new.at.isoformat(),
                    )
                )
        try:
            with self.store.transaction():
                self.metering.save([state])
                records = [self._price(o.record()) for o in outputs if isinstance(o, Closed)]
                for record in records:
                    self.outbox.add_usage(record)
                for event in events:
                    self.outbox.add_event(event)
        except Exception:
            log.exception("meter %s: interval not stored; closed again at the next reading", meter)
            return
        self.states[meter] = state
        self.records += len(records)
        self.events += len(events)

    def _price(self, record: UsageRecord) -> UsageRecord:
        try:
            return self.credit.price(record)
        except AgentError as exc:
            log.warning("meter %s seq %d not priced: %s", record.meter, record.seq, exc)
            return record

    # ------------------------------------------------------------------ effects
    def _carry_out(self, rt: MeterRuntime, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Switch):
                self._switch(rt, effect)
            else:
                self._emit(rt.point.id, effect)

    def _emit(self, meter: str, emit: Emit) -> None:
        self.event(emit.kind, meter, emit.reason, **emit.data)

    def _switch(self, rt: MeterRuntime, switch: Switch) -> bool:
        """Persist what is wanted, switch through the bus owner, read back, carry out what the
        outcome means; True when the relay read back the new state."""
        meter = rt.point.id
        rt.relay = want(rt.relay, switch)
        rt.point.watch_relay = not switch.on
        self.metering.want_relay(meter, switch.on, switch.cause, datetime.now(UTC))
        outcome = self._try_switch(rt, switch.on)
        if isinstance(outcome, ReadBack):
            rt.point.relay_on = outcome.on
        if confirmed(switch, outcome):
            log.info("meter %s: relay switched %s (%s)", meter, onoff(switch.on), switch.cause)
        rt.relay, effects = switched(rt.relay, switch, outcome)
        self._carry_out(rt, effects)
        return confirmed(switch, outcome)

    def _try_switch(self, rt: MeterRuntime, on: bool) -> Outcome:
        spec = rt.point.relay
        if spec is None:
            return NoRelay()
        timeout = rt.point.timeout_s

        def job(line: ModbusLine) -> tuple[bool, datetime]:
            return spec.switch(line, on, timeout), datetime.now(UTC)

        try:
            observed, at = rt.poller.submit(job).result(RELAY_WAIT_S)
        except (RelayError, AgentError, TimeoutError) as exc:
            log.error("meter %s: switching the relay %s failed: %s", rt.point.id, onoff(on), exc)
            return BusFailed(str(exc))
        return ReadBack(observed, at)

    # ------------------------------------------------------------------ what commands use
    def has_meter(self, meter: str | None) -> bool:
        return meter is not None and meter in self.meters

    def relay_on(self, meter: str) -> bool | None:
        return self.meters[meter].point.relay_on

    def switch(self, meter: str, switch: Switch) -> bool:
        """An operator's switch: True when the relay read back the new state. Otherwise the
        command is reported failed, so it is withdrawn (never carried out later)."""
        rt = self.meters[meter]
        before = rt.relay
        if self._switch(rt, switch):
            return True
        rt.relay = withdraw(rt.relay, before)
        rt.point.watch_relay = before.wanted is False
        self.metering.want_relay(meter, before.wanted, before.cause, datetime.now(UTC))
        return False

    def enforce(self, meter: str, now: datetime) -> None:
        """Let the credit rules decide for ``meter`` and carry out what they ask."""
        rt = self.meters[meter]
        try:
            decision = self.credit.decide(meter, now)
        except AgentError as exc:
            log.debug("meter %s: no credit decision: %s", meter, exc)
            return
        rt.last_action = (decision.action, decision.rule)
        self._carry_out(rt, enforce(rt.relay, decision))

    def resume(self, meter: str, point: ResumePoint) -> str:
        """The gateway's store started over: renumber the meter's records above the hub's
        ``point`` (``agent/resume.py``) in ONE transaction: outbox rows and bridge, credit
        charges and the meter's seq counter. What was done, in a few words."""
        state = self.states[meter]
        resumed = plan(point, state, self.outbox.first_usage(meter))
        if resumed is None:
            return f"already above seq {point.seq}"
        with self.store.transaction():
            moved = self.outbox.renumber(meter, resumed.shift)
            self.credit.renumber(meter, resumed.shift, resumed.lowest)
            if resumed.bridge is not None:
                self.outbox.add_usage(self._price(resumed.bridge))
            self.metering.save([resumed.state])
        self.states[meter] = resumed.state
        bridged = "" if resumed.bridge is None else f", bridged from {point.import_end} Wh"
        log.warning("meter %s: store started over; %d records resume above seq %d%s",
                    meter, moved, point.seq, bridged)  # fmt: skip
        return f"resumed above seq {point.seq}: {moved} records renumbered{bridged}"

    def event(self, kind: str, meter: str | None, reason: str = "", **data: Any) -> None:
        try:
            event = new_event(kind, meter, reason, **data)
        except ValidationError:
            event = new_event(kind, meter, reason)
        self.outbox.add_event(event)
        self.events += 1

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        handled = self.commands
        stats = {"records": self.records, "events": self.events,
                 "commands": handled.commands, "rejected": handled.rejected}  # fmt: skip
        return snapshot(
            self.settings.gateway_id,
            self.meters,
            self.states,
            self.pollers,
            uplink=bool(getattr(self.uplink, "connected", False)),
            outbox=(self.outbox.depth(), self.outbox.unconfirmed()),
            stats=stats,
        )

    def uplink_status(self) -> dict[str, Any]:
        """What the retained MQTT status carries besides ``state``: each meter's state, relay,
        seq and bus counters (``protocol.messages.BusHealth``)."""
        return {
            "meters": {
                mid: {
                    "state": rt.point.state,
                    "relay": onoff(rt.point.relay_on),
                    "seq": self.states[mid].seq if mid in self.states else 0,
                    "bus": bus_health(rt.point),
                }
                for mid, rt in self.meters.items()
            }
        }

    def _write_status(self) -> None:
        try:
            write_atomic(self.settings.status_path, self.status())
        except OSError as exc:
            log.warning("status file %s not written: %s", self.settings.status_path, exc)
