"""What a soak run does and when, drawn from its seed alone (pure: no I/O, no clock).

The fault schedule and the traffic (top-ups, operator commands, tariff changes) are both
lists of timed steps; the same seed and length give the same lists, so a failing run is
replayed by running its seed again. Every fault kind occurs at least once in any run.
"""

import random
from dataclasses import dataclass, field, replace
from typing import Any

AGENT_KILL = "agent_kill"
HUB_KILL = "hub_kill"
BROKER_KILL_PERSISTENT = "broker_kill_persistent"
BROKER_KILL_FRESH = "broker_kill_fresh"
AGENT_PARTITION = "agent_partition"
AGENT_HOLD = "agent_hold"
AGENT_DELAY = "agent_delay"
HUB_PARTITION = "hub_partition"
HUB_DELAY = "hub_delay"
OUTBOX_FULL = "outbox_full"
MODBUS_TIMEOUT = "modbus_timeout"
MODBUS_EXCEPTION = "modbus_exception"
MODBUS_GARBAGE = "modbus_garbage"
MODBUS_SLOW = "modbus_slow"
METER_VANISHED = "meter_vanished"
CLOCK_STEP = "clock_step"

KINDS = (
    AGENT_KILL,
    HUB_KILL,
    BROKER_KILL_PERSISTENT,
    BROKER_KILL_FRESH,
    AGENT_PARTITION,
    AGENT_HOLD,
    AGENT_DELAY,
    HUB_PARTITION,
    HUB_DELAY,
    OUTBOX_FULL,
    MODBUS_TIMEOUT,
    MODBUS_EXCEPTION,
    MODBUS_GARBAGE,
    MODBUS_SLOW,
    METER_VANISHED,
    CLOCK_STEP,
)
# How long a fault of each kind lasts (seconds, drawn uniformly); a kill's is its downtime.
DURATION = {
    AGENT_KILL: (0.5, 5.0),
    HUB_KILL: (0.5, 5.0),
    BROKER_KILL_PERSISTENT: (0.5, 4.0),
    BROKER_KILL_FRESH: (0.5, 4.0),
    AGENT_PARTITION: (3.0, 15.0),
    AGENT_HOLD: (3.0, 15.0),
    AGENT_DELAY: (3.0, 15.0),
    HUB_PARTITION: (3.0, 12.0),
    HUB_DELAY: (3.0, 12.0),
    OUTBOX_FULL: (8.0, 15.0),
    MODBUS_TIMEOUT: (1.0, 8.0),
    MODBUS_EXCEPTION: (1.0, 8.0),
    MODBUS_GARBAGE: (1.0, 8.0),
    MODBUS_SLOW: (1.0, 8.0),
    METER_VANISHED: (15.0, 30.0),
    CLOCK_STEP: (8.0, 20.0),
}
GLOBAL = (HUB_KILL, BROKER_KILL_PERSISTENT, BROKER_KILL_FRESH, HUB_PARTITION, HUB_DELAY)
MODBUS = (MODBUS_TIMEOUT, MODBUS_EXCEPTION, MODBUS_GARBAGE, MODBUS_SLOW, METER_VANISHED)
# Faults per minute beyond the one of each kind every run gets.
EXTRA_PER_MINUTE = 6


@dataclass(frozen=True)
class MeterRef:
    gateway: int
    bus: str  # "tcp0" or "rs485"
    unit: int

    @property
    def id(self) -> str:
        return f"m-{self.gateway}-{self.bus}-{self.unit}"


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the traffic starts
    kind: str
    duration: float
    gateway: int | None = None
    meter: MeterRef | None = None
    param: int = 0  # delay ms, clock offset s


@dataclass(frozen=True)
class Action:
    at: float
    kind: str  # "topup", "topup_replay", "disconnect", "reconnect", "tariff"
    args: dict[str, Any] = field(default_factory=dict)


def faults(
    rng: random.Random, seconds: float, gateways: int, meters: list[MeterRef]
) -> list[Fault]:
    """Every kind once, then ``EXTRA_PER_MINUTE`` more a minute, in time order; each ends by
    ``seconds`` (the run's traffic phase)."""
    kinds = list(KINDS) + [rng.choice(KINDS) for _ in range(int(EXTRA_PER_MINUTE * seconds / 60))]
    out = []
    for kind in kinds:
        low, high = DURATION[kind]
        duration = round(rng.uniform(low, high), 2)
        at = round(rng.uniform(2.0, max(2.5, seconds - duration - 2.0)), 2)
        gateway = None if kind in GLOBAL else rng.randrange(gateways)
        meter = None
        if kind in MODBUS:
            meter = rng.choice([m for m in meters if m.gateway == gateway])
        param = 0
        if kind in (AGENT_DELAY, HUB_DELAY):
            param = rng.randrange(50, 1500)
        elif kind == CLOCK_STEP:
            # seconds; a gateway whose clock was ahead holds its usage back until its clock
            # passes the last interval it stamped (agent.metering.intervals), so an offset
            # this size delays that gateway's last records by up to a minute and a half
            param = rng.choice((-1, 1)) * rng.randrange(20, 90)
        elif kind == MODBUS_SLOW:
            param = rng.randrange(100, 900)
        out.append(Fault(at, kind, duration, gateway, meter, param))
    return _serialised(sorted(out, key=lambda f: (f.at, f.kind)))


def resource(fault: Fault) -> str:
    """What a fault takes hold of: faults on one resource never overlap."""
    if fault.meter is not None:
        return fault.meter.id
    if fault.kind in (AGENT_KILL, CLOCK_STEP):
        return f"agent{fault.gateway}"
    if fault.kind in (AGENT_PARTITION, AGENT_HOLD, AGENT_DELAY, OUTBOX_FULL):
        return f"link{fault.gateway}"
    if fault.kind in (HUB_PARTITION, HUB_DELAY):
        return "hub-link"
    return "hub" if fault.kind == HUB_KILL else "broker"


def _serialised(ordered: list[Fault]) -> list[Fault]:
    """Each fault moved to after the end of the one before it on the same resource."""
    free: dict[str, float] = {}
    out = []
    for f in ordered:
        at = max(f.at, free.get(resource(f), 0.0))
        free[resource(f)] = at + f.duration + 1.0
        out.append(replace(f, at=round(at, 2)))
    return sorted(out, key=lambda f: (f.at, f.kind))


def traffic(
    rng: random.Random, seconds: float, customers: list[str], meters: list[str], tariff: str
) -> list[Action]:
    """Top-ups (some replayed with the same idempotency key), operator disconnects and
    reconnects, and tariff versions, about one step a second."""
    out: list[Action] = []
    t = 0.0
    n = 0
    while True:
        t += rng.expovariate(1.0)
        if t >= seconds:
            return out
        roll = rng.random()
        n += 1
        if roll < 0.55:
            cents = rng.randrange(20, 600)
            args = {
                "customer": rng.choice(customers),
                "amount": f"{cents // 100}.{cents % 100:02d}",
                "key": f"soak-{n}",
            }
            out.append(Action(round(t, 2), "topup", args))
        elif roll < 0.65 and any(a.kind == "topup" for a in out):
            first = rng.choice([a for a in out if a.kind == "topup"])
            out.append(Action(round(t, 2), "topup_replay", first.args))
        elif roll < 0.9:
            action = rng.choice(("disconnect", "reconnect"))
            out.append(Action(round(t, 2), action, {"meter": rng.choice(meters)}))
        else:
            rates = [f"0.{rng.randrange(50, 1500):04d}" for _ in range(5)]
            out.append(Action(round(t, 2), "tariff", {"tariff": tariff, "rates": rates}))
