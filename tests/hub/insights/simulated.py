"""30 days of a household meter on the simulator's physics (``firmware_sim.meter``: exact
energy integration, the household daily profile, relay, tamper bypass, register reset), closed
into 15-minute records as the agent closes them, and the events the hub would hold."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from firmware_sim.meter import NS_PER_S, Meter
from firmware_sim.profile import parse_profile
from hub.insights.anomalies import Samples, Span
from hub.insights.series import DAY_S, SLOT_S, Series, ints

START = int(datetime(2026, 3, 2, tzinfo=UTC).timestamp())  # a Monday
DAYS = 30


@dataclass
class Run:
    series: Series
    off: list[Span] = field(default_factory=list)
    samples: Samples | None = None


# (day, slot of the day) -> what happens to the meter at that moment
Script = dict[tuple[int, int], Callable[[Meter, int], None]]


def simulate(script: Script | None = None, seed: int = 7, base_w: int = 600) -> Run:
    """Every day's load varies by up to 15 % (seeded); ``script`` acts at given quarters."""
    rnd = random.Random(seed)
    meter = Meter(at_ns=START * NS_PER_S, load_w=base_w, profile=parse_profile("household"))
    starts, ends, i_start, i_end, segment = [], [], [], [], []
    seg = 0
    at, register = START, 0
    at_s, current, reg_samples = [], [], []
    for day in range(DAYS):
        meter.set_load(round(base_w * rnd.uniform(0.85, 1.15)), at * NS_PER_S)
        for quarter in range(96):
            action = (script or {}).get((day, quarter))
            if action is not None:
                before = meter.energy_wh(at * NS_PER_S)
                action(meter, at * NS_PER_S)
                after = meter.energy_wh(at * NS_PER_S)
                if after < before:  # a reset: the agent reports it, the hub opens a segment
                    seg += 1
                    register = after
            end = at + SLOT_S
            now_wh = meter.energy_wh(end * NS_PER_S)
            reading = meter.reading(end * NS_PER_S)
            at_s.append(end)
            current.append(reading.current_a)
            reg_samples.append(now_wh)
            starts.append(at)
            ends.append(end)
            i_start.append(register)
            i_end.append(now_wh)
            segment.append(seg)
            register, at = now_wh, end
    series = Series(
        meter="sim-1", service="electricity", tariff="t", timezone="UTC",
        start=ints(starts), end=ints(ends), wh=ints(i_end) - ints(i_start),
        segment=ints(segment), import_start=ints(i_start), import_end=ints(i_end),
    )  # fmt: skip
    samples = Samples(ints(at_s), np.asarray(current, dtype=float), ints(reg_samples))
    return Run(series, samples=samples)


def moment(day: int, quarter: int = 0) -> int:
    return START + day * DAY_S + quarter * SLOT_S
