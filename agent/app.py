"""The running agent: bus pollers, metering, local credit, relay control, uplink, status.

Threads: one :class:`BusPoller` per bus (the only code that touches that bus), the uplink's own
threads, and the engine (the thread that calls :meth:`Agent.run`). Pollers and the uplink only
put work on the engine's queue; the engine meters each reading, prices closed intervals, stores
them (metering state and journal in one transaction, then the outbox), decides credit actions,
switches relays through the bus owner, applies commands, and writes the status file.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from agent.commands import credit_state
from agent.errors import AgentError, CommandRejected, CommandReplayed, RelayError
from agent.metering.intervals import Closed, MeterState, Point, Reset, step
from agent.metering.store import MeteringStore
from agent.modbus.bus import ModbusLine
from agent.modbus.poller import BusPoller, MeterPoint, Reading, meter_point
from agent.sdnotify import Notifier
from agent.settings import AgentSettings
from agent.status import write_atomic
from protocol.messages import Command, CreditState, Event, UsageRecord

log = logging.getLogger(__name__)

RELAY_WAIT_S = 15.0
STATUS_PUBLISH_S = 60.0  # refresh the retained MQTT status this often
OFFLINE_AFTER = 3  # failed polls in a row before a meter_offline event


class OutboxLike(Protocol):
    def add_usage(self, record: UsageRecord) -> Any: ...
    def add_event(self, event: Event) -> Any: ...
    def depth(self) -> int: ...
    def unconfirmed(self) -> int: ...


class DecisionLike(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def rule(self) -> str: ...


class CreditLike(Protocol):
    def price(self, record: UsageRecord) -> UsageRecord: ...
    def apply(self, meter_id: str, state: CreditState) -> Any: ...
    def decide(self, meter_id: str, now: datetime) -> DecisionLike: ...
    def set_relay(self, meter_id: str, relay: Any, by_rules: bool = False) -> None: ...


class GateLike(Protocol):
    def accept(self, payload: bytes, now: datetime) -> Command: ...


@dataclass
class MeterRuntime:
    """What the engine remembers about a meter between readings (not persisted)."""

    point: MeterPoint
    poller: BusPoller
    prev_wh: int | None = None
    prev_relay: bool | None = None
    tamper_flow: bool = False
    tamper_relay: bool = False
    last_action: tuple[str, str] = ("none", "")
    wanted: bool | None = None
    cause: str = ""
    switched_at: datetime | None = None
    offline: bool = False
    unconfirmed: bool = False  # the last switch did not get through the bus
    reported_relay: bool | None = None  # the relay state last sent to the hub as a ``relay`` event


def new_event(kind: str, meter: str | None, reason: str = "", **data: Any) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        kind=kind,
        at=datetime.now(UTC),
        meter=meter,
        reason=reason[:500],
        data={k: v for k, v in data.items() if v is not None},
    )


class Agent:
    """Everything wired together; :meth:`run` blocks until :meth:`stop`."""

    def __init__(
        self,
        settings: AgentSettings,
        outbox: OutboxLike,
        credit: CreditLike,
        gate: GateLike,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.credit = credit
        self.gate = gate
        self.notifier = notifier or Notifier()
        self.store = MeteringStore(settings.storage.path)
        self.uplink: Any = None
        self._status_sent = time.monotonic()
        self._journal_behind = False
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self.pollers: list[BusPoller] = []
        self.meters: dict[str, MeterRuntime] = {}
        self.states: dict[str, MeterState] = {}
        self.stats = {"records": 0, "events": 0, "commands": 0, "rejected": 0}
        wanted = self.store.relays()
        saved = self.store.states()
        for bus in settings.buses:
            points = [meter_point(m, bus) for m in settings.meters_on(bus.name)]
            if not points:
                continue
            poller = BusPoller(bus, points, settings.timing.poll_interval_s, self._on_reading)
            self.pollers.append(poller)
            for point in points:
                rt = MeterRuntime(point, poller)
                if point.id in wanted:
                    rt.wanted, rt.cause = wanted[point.id]
                    point.watch_relay = rt.wanted is False
                self.meters[point.id] = rt
                self.states[point.id] = saved.get(point.id, MeterState(point.id))

    # ------------------------------------------------------------------ lifecycle
    def on_command(self, payload: bytes) -> None:
        """Called by the uplink (its thread): hand the command to the engine."""
        self._queue.put(("command", payload))

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop", None))

    def run(self) -> None:
        """Recover, start the pollers, then meter and enforce until :meth:`stop`."""
        self._recover()
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
            self.store.commit(list(self.states.values()), [], [])
            self._write_status()
            self.store.close()

    def _handle(self, kind: str, item: Any) -> None:
        if kind == "reading":
            self._reading(item)
        elif kind == "command":
            self._command(item)

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
        if self._journal_behind:
            self._journal_behind = False
            try:
                self._recover()
            except Exception:
                log.exception("journal still not handed to the outbox")
                self._journal_behind = True
        self._write_status()
        now = time.monotonic()
        if self.uplink is not None and now - self._status_sent >= STATUS_PUBLISH_S:
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

    # ------------------------------------------------------------------ recovery
    def _recover(self) -> None:
        """Hand journal rows a crash left between the metering store and the outbox."""
        rows = self.store.pending()
        for pid, item in rows:
            if isinstance(item, UsageRecord):
                self.outbox.add_usage(item)
            else:
                self.outbox.add_event(item)
            self.store.done([pid])
        if rows:
            log.warning("recovered %d journalled records/events into the outbox", len(rows))

    # ------------------------------------------------------------------ readings
    def _on_reading(self, reading: Reading) -> None:
        self._queue.put(("reading", reading))

    def _reading(self, reading: Reading) -> None:
        rt = self.meters[reading.meter]
        if not reading.ok or reading.import_wh is None:
            if not rt.offline and rt.point.failures >= OFFLINE_AFTER:
                rt.offline = True
                self._event("meter_offline", reading.meter, reading.error, polls=OFFLINE_AFTER)
            return
        if rt.offline:
            rt.offline = False
            self._event("meter_online", reading.meter, "answers again")
        self._meter(reading.meter, Point(reading.at, reading.import_wh))
        self._check_tamper(rt, reading)
        self._report_relay(rt, reading)
        rt.prev_wh, rt.prev_relay = reading.import_wh, reading.relay_on
        self._enforce(rt, reading.at)

    def _report_relay(self, rt: MeterRuntime, reading: Reading) -> None:
        """A ``relay`` event whenever the relay is first read, or read in another state."""
        if reading.relay_on is None or reading.relay_on == rt.reported_relay:
            return
        rt.reported_relay = reading.relay_on
        state = _onoff(reading.relay_on)
        self._event("relay", reading.meter, f"relay reads {state}", state=state)

    def _meter(self, meter: str, point: Point) -> None:
        state, outputs = step(self.states[meter], point, self.settings.timing.report_interval_s)
        records: list[UsageRecord] = []
        events: list[Event] = []
        for out in outputs:
            if isinstance(out, Closed):
                records.append(self._price(out.record()))
            elif isinstance(out, Reset):
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
        if not outputs:
            self.states[meter] = state
            return
        ids = self.store.commit([state], records, events)
        # committed: from here the records exist (in the journal) whatever happens next
        self.states[meter] = state
        try:
            for record in records:
                self.outbox.add_usage(record)
            for event in events:
                self.outbox.add_event(event)
        except Exception:
            log.exception("outbox refused meter %s's records; kept in the journal", meter)
            self._journal_behind = True
        else:
            self.store.done(ids)
        self.stats["records"] += len(records)
        self.stats["events"] += len(events)

    def _price(self, record: UsageRecord) -> UsageRecord:
        try:
            return self.credit.price(record)
        except AgentError as exc:
            log.warning("meter %s seq %d not priced: %s", record.meter, record.seq, exc)
            return record

    def _check_tamper(self, rt: MeterRuntime, reading: Reading) -> None:
        meter = rt.point.id
        flowing = (
            rt.prev_relay is False
            and reading.relay_on is False
            and rt.prev_wh is not None
            and reading.import_wh is not None
            and reading.import_wh > rt.prev_wh
        )
        if flowing and not rt.tamper_flow:
            assert reading.import_wh is not None and rt.prev_wh is not None
            self._event(
                "tamper",
                meter,
                "energy flowing while the relay reads off",
                rule="energy_while_off",
                from_wh=rt.prev_wh,
                to_wh=reading.import_wh,
            )
        rt.tamper_flow = flowing or (rt.tamper_flow and reading.relay_on is False)
        mismatch = (
            rt.wanted is not None
            and reading.relay_on is not None
            and reading.relay_on != rt.wanted
            and (rt.switched_at is None or reading.at > rt.switched_at)
        )
        if mismatch and rt.unconfirmed and rt.wanted is not None:
            # the last switch failed on the bus: try again, no tamper (nobody touched it)
            if self._switch(rt, rt.wanted, rt.cause, quiet=True):
                kind = "reconnect" if rt.wanted else "disconnect"
                self._event(kind, meter, "switched on a later attempt", cause=rt.cause)
        elif mismatch and not rt.tamper_relay:
            self._event(
                "tamper",
                meter,
                f"relay reads {_onoff(reading.relay_on)} but was switched {_onoff(rt.wanted)}",
                rule="relay_mismatch",
            )
            rt.tamper_relay = True
            if rt.wanted is not None:
                self._switch(rt, rt.wanted, rt.cause, quiet=True)
        elif not mismatch:
            rt.tamper_relay = False

    # ------------------------------------------------------------------ credit
    def _enforce(self, rt: MeterRuntime, now: datetime) -> None:
        meter = rt.point.id
        try:
            decision = self.credit.decide(meter, now)
        except AgentError as exc:
            log.debug("meter %s: no credit decision: %s", meter, exc)
            return
        rt.last_action = (decision.action, decision.rule)
        if decision.action == "disconnect":
            if rt.wanted is not False and self._switch(rt, False, "credit"):
                self._event(
                    "disconnect", meter, decision.reason, rule=decision.rule, cause="credit"
                )
        elif decision.action == "reconnect":
            by_credit = rt.wanted is False and rt.cause == "credit"
            if by_credit and self._switch(rt, True, "credit"):
                self._event("reconnect", meter, decision.reason, rule=decision.rule, cause="credit")
        elif decision.action == "prompt":  # the rules prompt once per crossing
            self._event("low_credit", meter, decision.reason, rule=decision.rule)

    # ------------------------------------------------------------------ relay
    def _switch(self, rt: MeterRuntime, on: bool, cause: str, quiet: bool = False) -> bool:
        """Switch and read back; persist what is wanted; tamper event on a mismatch."""
        meter = rt.point.id
        spec = rt.point.relay
        now = datetime.now(UTC)
        rt.wanted, rt.cause = on, cause
        rt.point.watch_relay = not on
        self.store.want_relay(meter, on, cause, now)
        if spec is None:
            self._event("relay_fault", meter, "this meter has no relay to switch")
            return False
        timeout = rt.point.timeout_s

        def job(line: ModbusLine) -> tuple[bool, datetime]:
            return spec.switch(line, on, timeout), datetime.now(UTC)

        try:
            observed, rt.switched_at = rt.poller.submit(job).result(RELAY_WAIT_S)
        except (RelayError, AgentError, TimeoutError) as exc:
            rt.unconfirmed = True
            log.error("meter %s: switching the relay %s failed: %s", meter, _onoff(on), exc)
            if not quiet:
                self._event("relay_fault", meter, f"switching {_onoff(on)} failed: {exc}")
            return False
        rt.unconfirmed = False
        rt.point.relay_on = observed
        # energy may have flowed between the last poll and the switch: compare from the next one
        rt.prev_relay, rt.prev_wh = observed, None
        if observed != on:
            rt.tamper_relay = True
            self._event(
                "tamper",
                meter,
                f"relay read back {_onoff(observed)} after switching {_onoff(on)}",
                rule="relay_readback",
            )
            return False
        log.info("meter %s: relay switched %s (%s)", meter, _onoff(on), cause)
        return True

    # ------------------------------------------------------------------ commands
    def _command(self, payload: bytes) -> None:
        self.stats["commands"] += 1
        now = datetime.now(UTC)
        try:
            cmd = self.gate.accept(payload, now)
        except CommandReplayed as exc:  # applied before: say so again, do not apply again
            meter = _text(json.loads(payload).get("meter"))
            self._event("command_ack", meter if meter in self.meters else None,
                        "already applied", command=exc.command_id, ok=True)  # fmt: skip
            return
        except CommandRejected as exc:
            self._reject(payload, exc.reason, exc.command_id)
            return
        rt = self.meters.get(cmd.meter)
        if rt is None:
            self._reject(payload, f"meter {cmd.meter!r} is not on this gateway", cmd.id)
            return
        ok, detail = True, ""
        was = rt.point.relay_on
        if cmd.action == "disconnect":
            ok = self._switch(rt, False, "command")
            self.credit.set_relay(cmd.meter, "disconnected", by_rules=False)
            if ok and was is not False:  # a change: the hub takes these events as relay state
                self._event("disconnect", cmd.meter, cmd.reason, cause="command", command=cmd.id)
        elif cmd.action == "reconnect":
            ok = self._switch(rt, True, "command")
            self.credit.set_relay(cmd.meter, "connected", by_rules=False)
            if ok and was is not True:
                self._event("reconnect", cmd.meter, cmd.reason, cause="command", command=cmd.id)
        elif cmd.action == "credit":
            try:
                state = credit_state(cmd)
            except CommandRejected as exc:
                self._reject(payload, exc.reason, cmd.id)
                return
            self.credit.apply(cmd.meter, state)
            self._enforce(rt, now)
        elif cmd.action == "prompt":
            self._event("prompt", cmd.meter, cmd.reason, command=cmd.id)
        else:
            self._reject(payload, f"unknown action {cmd.action!r}", cmd.id)
            return
        if not ok:
            detail = "relay did not confirm"
        self._event(
            "command_ack",
            cmd.meter,
            detail or "applied",
            command=cmd.id,
            action=cmd.action,
            ok=ok,
        )

    def _reject(self, payload: bytes, reason: str, command_id: str | None) -> None:
        self.stats["rejected"] += 1
        meter: str | None = None
        try:
            data = json.loads(payload)
            if isinstance(data, dict):
                command_id = command_id or _text(data.get("id"))
                meter = _text(data.get("meter"))
        except ValueError:
            pass
        if meter is not None and meter not in self.meters:
            meter = None
        log.warning("command %s rejected: %s", command_id or "?", reason)
        self._event("command_rejected", meter, reason, command=command_id)

    # ------------------------------------------------------------------ events and status
    def _event(self, kind: str, meter: str | None, reason: str = "", **data: Any) -> None:
        try:
            event = new_event(kind, meter, reason, **data)
        except ValidationError:
            event = new_event(kind, meter, reason)
        self.outbox.add_event(event)
        self.stats["events"] += 1

    def status(self) -> dict[str, Any]:
        meters: dict[str, Any] = {}
        for mid, rt in self.meters.items():
            p = rt.point
            st = self.states.get(mid)
            meters[mid] = {
                "bus": p.settings.bus,
                "unit": p.settings.unit,
                "model": p.model.model,
                "state": p.state,
                "relay": "unknown" if p.relay_on is None else _onoff(p.relay_on),
                "relay_wanted": None if rt.wanted is None else _onoff(rt.wanted),
                "relay_cause": rt.cause or None,
                "import_wh": p.import_wh,
                "last_reading": p.last_ok.isoformat() if p.last_ok else None,
                "last_error": p.last_error or None,
                "seq": st.seq if st else 0,
                "credit_action": rt.last_action[0],
                "counters": dict(vars(p.counters)),
            }
        return {
            "v": 1,
            "gateway": self.settings.gateway_id,
            "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(),
            "uplink": {"connected": bool(getattr(self.uplink, "connected", False))},
            "outbox_depth": self.outbox.depth(),
            "outbox_unconfirmed": self.outbox.unconfirmed(),
            "stats": dict(self.stats),
            "buses": {
                p.bus.name: {
                    "transport": p.bus.transport,
                    "alive": p.is_alive(),
                    "cycles": p.cycles,
                    "connected": p.line.connected,
                    "reconnects": p.line.reconnects,
                }
                for p in self.pollers
            },
            "meters": meters,
        }

    def uplink_status(self) -> dict[str, Any]:
        """What the retained MQTT status carries besides ``state``: each meter's state and relay."""
        return {
            "meters": {
                mid: {
                    "state": rt.point.state,
                    "relay": _onoff(rt.point.relay_on),
                    "seq": self.states[mid].seq if mid in self.states else 0,
                }
                for mid, rt in self.meters.items()
            }
        }

    def _write_status(self) -> None:
        try:
            write_atomic(self.settings.status_path, self.status())
        except OSError as exc:
            log.warning("status file %s not written: %s", self.settings.status_path, exc)


def _onoff(on: bool | None) -> str:
    return "unknown" if on is None else ("on" if on else "off")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None
