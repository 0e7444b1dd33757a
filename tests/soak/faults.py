"""Injecting the schedule's faults into a running :class:`tests.soak.world.World`.

Each fault starts at its time and is undone ``duration`` seconds later, in a thread of its own;
the schedule guarantees that faults on one resource never overlap (``schedule.resource``).
"""

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_sim.control import FaultMode
from tests.soak import schedule as s
from tests.soak.world import MAX_OUTBOX_ROWS, World
from tests.support import wait_for

log = logging.getLogger(__name__)

OUTBOX_FULL_MAX_S = 45.0  # an outbox_full partition lasts until the bound is reached, or this
MODBUS_MODES = {
    s.MODBUS_TIMEOUT: FaultMode.NO_RESPONSE,
    s.MODBUS_EXCEPTION: FaultMode.EXCEPTION,
    s.MODBUS_GARBAGE: FaultMode.BAD_CRC,
    s.MODBUS_SLOW: FaultMode.SLOW,
    s.METER_VANISHED: FaultMode.NO_RESPONSE,
}


class Injector:
    def __init__(self, world: World) -> None:
        self.world = world
        self.injected: Counter[str] = Counter()
        self.errors: list[str] = []
        self.outbox_peak: dict[str, int] = {}
        self._threads: list[threading.Thread] = []
        # a fault holds its resource until it is undone (a restart can outlast its schedule)
        self._locks: dict[str, threading.Lock] = {}

    def run(self, faults: list[s.Fault], t0: float) -> None:
        """Start each fault at ``t0 + fault.at`` (monotonic); returns once all have started."""
        for fault in faults:
            self._locks.setdefault(s.resource(fault), threading.Lock())
        for fault in faults:
            left = t0 + fault.at - time.monotonic()
            if left > 0:
                time.sleep(left)
            thread = threading.Thread(target=self._one, args=(fault,), name=f"fault-{fault.kind}")
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _one(self, fault: s.Fault) -> None:
        with self._locks[s.resource(fault)]:
            self._hold(fault)

    def _hold(self, fault: s.Fault) -> None:
        try:
            undo = self._begin(fault)
            self.injected[fault.kind] += 1
            log.info("fault %s %.1fs %s", fault.kind, fault.duration, _target(fault))
            began = time.monotonic()
            while time.monotonic() < began + fault.duration or self._filling(fault, began):
                time.sleep(0.2)
            undo()
        except Exception as exc:
            log.exception("fault %s failed", fault)
            self.errors.append(f"{fault.kind} at {fault.at}s: {exc}")

    def _begin(self, fault: s.Fault) -> Callable[[], None]:
        w = self.world
        kind = fault.kind
        gw = w.gateways[fault.gateway] if fault.gateway is not None else None
        if kind == s.AGENT_KILL:
            assert gw is not None
            w.kill_agent(gw)
            return lambda: w.start_agent(gw)
        if kind == s.CLOCK_STEP:
            assert gw is not None
            w.kill_agent(gw, kill=False)
            gw.clock_offset = fault.param
            w.start_agent(gw)

            def back() -> None:
                w.kill_agent(gw, kill=False)
                gw.clock_offset = 0
                w.start_agent(gw)

            return back
        if kind == s.HUB_KILL:
            w.kill_hub()
            return w.start_hub
        if kind in (s.BROKER_KILL_PERSISTENT, s.BROKER_KILL_FRESH):
            w.kill_broker(keep_store=kind == s.BROKER_KILL_PERSISTENT)
            return w.start_broker
        if kind in (s.HUB_PARTITION, s.HUB_DELAY):
            proxy = w.hub_proxy
        elif gw is not None and kind in (
            s.AGENT_PARTITION,
            s.AGENT_HOLD,
            s.AGENT_DELAY,
            s.OUTBOX_FULL,
        ):
            proxy = gw.proxy
        else:
            proxy = None
        if proxy is not None:
            if kind in (s.HUB_DELAY, s.AGENT_DELAY):
                proxy.delay(fault.param / 1000)
            elif kind == s.AGENT_HOLD:
                proxy.hold()
            else:
                proxy.partition()
            return proxy.heal
        assert gw is not None and fault.meter is not None
        meter = fault.meter
        w.fault(gw, meter, MODBUS_MODES[kind], fault.param)
        return lambda: w.fault(gw, meter, FaultMode.NONE)

    def _filling(self, fault: s.Fault, began: float) -> bool:
        """For ``outbox_full``: whether the gateway stays cut off, until its outbox (status
        file) has reached its bound, for at most ``OUTBOX_FULL_MAX_S``; keeps the peak seen."""
        if fault.kind != s.OUTBOX_FULL:
            return False
        gw = self.world.gateways[fault.gateway or 0]
        depth = int(_status(gw.status_path()).get("outbox_depth") or 0)
        self.outbox_peak[gw.id] = max(self.outbox_peak.get(gw.id, 0), depth)
        full = self.outbox_peak[gw.id] >= MAX_OUTBOX_ROWS
        return not full and time.monotonic() < began + OUTBOX_FULL_MAX_S


def _status(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def _target(fault: s.Fault) -> str:
    if fault.meter is not None:
        return fault.meter.id
    return f"gw-{fault.gateway}" if fault.gateway is not None else ""


def heal_all(world: World) -> None:
    """Every link open, every process running at true time, every Modbus fault cleared."""
    if world.hub_proxy is not None:
        world.hub_proxy.heal()
    if world.broker is not None and world.broker.poll() is not None:
        world.start_broker()
    if not world.running("hub"):
        world.start_hub()
    for gw in world.gateways:
        gw.proxy.heal()
        if gw.clock_offset:
            world.kill_agent(gw, kill=False)
            gw.clock_offset = 0
        if not world.running(gw.agent):
            world.start_agent(gw)
        for meter in gw.meters:
            world.fault(gw, meter, FaultMode.NONE)
    wait_for(lambda: all(world.running(g.agent) for g in world.gateways), timeout=30)
