"""The owner of one bus: a thread that reads every meter on it each poll interval.

Requests are serialized on the line. Each meter has its own timeout, retries and counters; a
meter that keeps failing is skipped for a back-off period that doubles up to a cap, so it never
stalls the others. Other threads act on the bus only through :meth:`BusPoller.submit`, which runs
a function on the bus thread between two meters (relay switching uses this).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agent.errors import BusError
from agent.metrics import POLL_SECONDS
from agent.modbus.bus import ModbusLine
from agent.modbus.plan import Block, base_unit_decoder, plan_model
from agent.relay import RelaySpec
from agent.settings import MeterSettings, RtuBus, TcpBus
from hardware.codec import CodecError, decode_raw
from hardware.regmap import CURRENT_REGISTERS, ENERGY_REGISTER, MeterModel, Register, load_model
from protocol.messages import MAX_CURRENT_A

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Counters:
    requests: int = 0
    errors: int = 0
    timeouts: int = 0
    exceptions: int = 0
    connection: int = 0
    frame: int = 0
    polls: int = 0
    failed_polls: int = 0
    skipped: int = 0

    def count(self, err: BusError) -> None:
        self.errors += 1
        if err.kind == "timeout":
            self.timeouts += 1
        elif err.kind == "exception":
            self.exceptions += 1
        elif err.kind == "connection":
            self.connection += 1
        else:
            self.frame += 1


@dataclass
class MeterPoint:
    """Everything the bus owner knows about one meter."""

    settings: MeterSettings
    model: MeterModel
    blocks: list[Block]
    timeout_s: float
    relay: RelaySpec | None
    energy: Callable[[list[int]], int]  # the energy register's words to Wh
    currents: tuple[Register, ...] = ()  # read with the energy (electricity meters)
    counters: Counters = field(default_factory=Counters)
    failures: int = 0
    backoff_until: float = 0.0
    state: str = "starting"  # ok | failing | starting
    last_error: str = ""
    last_ok: datetime | None = None
    import_wh: int | None = None
    relay_on: bool | None = None
    watch_relay: bool = False  # set by the engine while it wants the relay off

    @property
    def id(self) -> str:
        return self.settings.id


@dataclass(frozen=True)
class Reading:
    """One poll of one meter: the energy register in Wh, the relay as it reads back and the
    current in A (the largest phase; None: the map has none, or it read garbage)."""

    meter: str
    at: datetime
    import_wh: int | None
    relay_on: bool | None
    error: str = ""
    current_a: float | None = None

    @property
    def ok(self) -> bool:
        return self.import_wh is not None


def meter_point(
    meter: MeterSettings, bus: TcpBus | RtuBus, dirs: tuple[Path, ...] = ()
) -> MeterPoint:
    model = load_model(meter.model, dirs)
    relay = RelaySpec.for_meter(meter, model, dirs)
    currents = tuple(
        model.register(n)
        for n in CURRENT_REGISTERS
        if meter.report_current and model.has(n) and model.service in (None, "electricity")
    )
    names = [ENERGY_REGISTER, *(r.name for r in currents)]
    blocks = plan_model(model, names, bridge=True)
    decoder = base_unit_decoder(model, model.register(ENERGY_REGISTER), meter.wh_per_m3)
    timeout = meter.timeout_s or bus.timeout_s
    return MeterPoint(meter, model, blocks, timeout, relay, decoder, currents)


def current_of(
    model: MeterModel, regs: tuple[Register, ...], values: dict[str, list[int]]
) -> float | None:
    """The largest phase current in A of one poll's words; None when there is none or one is
    not a current (garbage, negative, beyond ``MAX_CURRENT_A``): the energy still counts."""
    found: float | None = None
    for reg in regs:
        words = values.get(reg.name)
        if words is None:
            return None
        if reg.type == "u16" and len(words) == 1 and 0 <= words[0] <= 0xFFFF:
            raw: int | float = words[0]  # the DDS238's: the common case, without the codec
        else:
            try:
                raw = decode_raw(words, reg.type, model.order_of(reg))
            except CodecError:
                return None
        amps = raw * float(reg.scale)
        if not 0 <= amps <= MAX_CURRENT_A:
            return None
        found = amps if found is None or amps > found else found
    return found


class BusPoller(threading.Thread):
    """Polls the meters of one bus until :meth:`stop`; hands each :class:`Reading` to ``sink``."""

    def __init__(
        self,
        bus: TcpBus | RtuBus,
        meters: list[MeterPoint],
        poll_interval_s: float,
        sink: Callable[[Reading], None],
        line: ModbusLine | None = None,
    ) -> None:
        super().__init__(name=f"bus-{bus.name}", daemon=True)
        self.bus = bus
        self._poll_seconds = POLL_SECONDS.labels(bus.name)
        self.line = line or ModbusLine(bus)
        self.meters = meters
        self.poll_interval_s = poll_interval_s
        self.sink = sink
        self.cycles = 0
        self.last_cycle = time.monotonic()
        self._jobs: queue.Queue[tuple[Callable[[ModbusLine], Any], Future[Any]] | None] = (
            queue.Queue()
        )
        self._halt = threading.Event()

    def submit(self, fn: Callable[[ModbusLine], T]) -> Future[T]:
        """Run ``fn(line)`` on the bus thread, between two meters; its result in a Future."""
        fut: Future[T] = Future()
        if self._halt.is_set():
            fut.set_exception(BusError(self.bus.name, 0, "connection", "bus stopped"))
        else:
            self._jobs.put((fn, fut))
        return fut

    def stop(self) -> None:
        self._halt.set()
        self._jobs.put(None)

    def run(self) -> None:
        try:
            self._loop()
        finally:
            self._drain_jobs()
            self.line.close()

    def _loop(self) -> None:
        next_cycle = time.monotonic()
        while not self._halt.is_set():
            for meter in self.meters:
                self._run_jobs()
                if self._halt.is_set():
                    return
                if time.monotonic() < meter.backoff_until:
                    meter.counters.skipped += 1
                    continue
                try:
                    self.sink(self.poll(meter))
                except Exception:
                    log.exception(
                        "bus %s: handling a reading of %s failed", self.bus.name, meter.id
                    )
            self.cycles += 1
            self.last_cycle = time.monotonic()
            next_cycle += self.poll_interval_s
            now = time.monotonic()
            next_cycle = max(next_cycle, now)
            self._wait_jobs(next_cycle)

    def _wait_jobs(self, until: float) -> None:
        while not self._halt.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                job = self._jobs.get(timeout=left)
            except queue.Empty:
                return
            if job is None:
                return
            self._run_job(*job)

    def _run_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                return
            self._run_job(*job)

    def _run_job(self, fn: Callable[[ModbusLine], Any], fut: Future[Any]) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn(self.line))
        except BaseException as exc:
            fut.set_exception(exc)

    def _drain_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(BusError(self.bus.name, 0, "connection", "bus stopped"))

    def poll(self, meter: MeterPoint) -> Reading:
        """Read one meter now (with retries); update its counters and back-off."""
        with self._poll_seconds.time():
            return self._poll(meter)

    def _poll(self, meter: MeterPoint) -> Reading:
        meter.counters.polls += 1
        err: BusError | None = None
        for attempt in range(self.bus.retries + 1):
            try:
                at = datetime.now(UTC)
                energy, relay_on, current = self._read(meter)
            except BusError as exc:
                err = exc
                if exc.kind in ("exception", "connection") or self._halt.is_set():
                    break
                if attempt < self.bus.retries:
                    time.sleep(min(0.05 * (attempt + 1), meter.timeout_s))
                continue
            self._recovered(meter, energy, relay_on, at)
            return Reading(meter.id, at, energy, relay_on, current_a=current)
        assert err is not None
        self._failed(meter, err)
        return Reading(meter.id, datetime.now(UTC), None, None, str(err))

    def _read(self, meter: MeterPoint) -> tuple[int, bool | None, float | None]:
        unit = meter.settings.unit
        # The relay first, then the energy: a relay that reads off was already off when the
        # energy was read, so energy rising between two such polls really flowed while off.
        relay_on: bool | None = None
        spec = meter.relay
        if spec is not None and self._relay_due(meter):
            meter.counters.requests += 1
            try:
                relay_on = spec.read(self.line, meter.timeout_s)
            except BusError as exc:
                meter.counters.count(exc)
                # a meter that does not answer fails the poll; a refused or garbled relay read
                # (or a relay module that is away) leaves the relay unknown for this poll
                if exc.kind == "connection" or (exc.kind == "timeout" and spec.unit == unit):
                    raise
        values: dict[str, list[int]] = {}
        for block in meter.blocks:
            meter.counters.requests += 1
            try:
                data = self.line.read(
                    unit, block.function, block.address, block.count, meter.timeout_s
                )
            except BusError as exc:
                meter.counters.count(exc)
                raise
            for reg in block.registers:
                values[reg.name] = block.words_of(reg, data)
        try:
            energy = meter.energy(values[ENERGY_REGISTER])
        except (CodecError, ValueError, ArithmeticError) as exc:
            err = BusError(self.bus.name, unit, "frame", f"energy register garbage: {exc}")
            meter.counters.count(err)
            raise err from exc
        if energy < 0:
            err = BusError(self.bus.name, unit, "frame", f"negative energy {energy}")
            meter.counters.count(err)
            raise err
        return energy, relay_on, current_of(meter.model, meter.currents, values)

    def _relay_due(self, meter: MeterPoint) -> bool:
        """Read the relay every poll while it is (or should be) off, else every few polls."""
        if meter.watch_relay or meter.relay_on is not True:
            return True
        return meter.counters.polls % self.bus.relay_read_every == 0

    def _recovered(
        self, meter: MeterPoint, energy: int, relay_on: bool | None, at: datetime
    ) -> None:
        if meter.state == "failing":
            log.info(
                "meter %s (bus %s unit %d) answers again after %d failed polls",
                meter.id,
                self.bus.name,
                meter.settings.unit,
                meter.failures,
            )
        meter.state = "ok"
        meter.failures = 0
        meter.backoff_until = 0.0
        meter.last_ok = at
        meter.import_wh = energy
        if relay_on is not None:
            meter.relay_on = relay_on

    def _failed(self, meter: MeterPoint, err: BusError) -> None:
        meter.counters.failed_polls += 1
        meter.failures += 1
        meter.last_error = str(err)
        if meter.failures >= 2:
            delay = min(self.bus.backoff_s * 2 ** (meter.failures - 2), self.bus.backoff_max_s)
            meter.backoff_until = time.monotonic() + delay
        if meter.state != "failing":
            log.error(
                "meter %s (bus %s unit %d) failing: %s",
                meter.id,
                self.bus.name,
                meter.settings.unit,
                err,
            )
            meter.state = "failing"
        else:
            log.debug("meter %s still failing (%d): %s", meter.id, meter.failures, err)
