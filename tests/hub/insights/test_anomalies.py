"""Each anomaly kind raised from a scenario on the simulator's meter physics, and none on a
clean 30-day history (issue 19)."""

from __future__ import annotations

import numpy as np
import ruptures
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.meter import Meter
from hub.insights.anomalies import (
    AnomalySettings,
    Mismatch,
    Samples,
    Span,
    best_split,
    bypass,
    change_point,
    import_mismatch,
    iso,
)
from hub.insights.reads import MeterData
from hub.insights.series import DAY_S
from hub.insights.service import meter_anomalies
from tests.hub.insights.simulated import DAYS, START, moment, simulate

END = START + DAYS * DAY_S


def kinds(data: MeterData) -> list[str]:
    return sorted(a.kind for a in meter_anomalies(data, END))


def test_a_clean_history_raises_nothing() -> None:
    run = simulate()
    assert run.series.wh.sum() > 0 and (run.series.wh > 0).all()
    assert kinds(MeterData(run.series, [], [], [])) == []
    assert run.samples is not None
    assert bypass("sim-1", run.samples, AnomalySettings()) is None
    for seed in range(1, 6):  # other clean months: still nothing
        assert kinds(MeterData(simulate(seed=seed).series, [], [], [])) == []


def test_tamper_bypass_is_energy_while_the_relay_reads_off() -> None:
    def cut(meter: Meter, at: int) -> None:
        meter.set_supply(False, at)
        meter.set_tamper(True, at)  # the simulator's bypass: energy flows, the relay reads off

    def restore(meter: Meter, at: int) -> None:
        meter.set_tamper(False, at)
        meter.set_supply(True, at)

    run = simulate({(10, 0): cut, (12, 0): restore})
    off = [Span(moment(10), moment(12))]  # the disconnect and reconnect events
    (found,) = meter_anomalies(MeterData(run.series, off, [], []), END)
    assert found.kind == "energy_while_off" and found.severity == "high"
    assert found.evidence["records"] == 2 * 96 and not found.evidence["relay_forced_on"]
    inside = (run.series.start >= moment(10)) & (run.series.end <= moment(12))
    assert found.evidence["energy"] == int(run.series.wh[inside].sum()) > 0
    clean = simulate({(10, 0): lambda m, at: m.set_supply(False, at),
                      (12, 0): lambda m, at: m.set_supply(True, at)})  # fmt: skip
    assert kinds(MeterData(clean.series, off, [], [])) == []  # no bypass: no energy, nothing


def test_relay_forced_on_after_a_disconnect() -> None:
    run = simulate()  # the supply never went off: someone forced the relay on
    off = [Span(moment(15, 40), moment(17), forced=True)]
    (found,) = meter_anomalies(MeterData(run.series, off, [], []), END)
    assert found.kind == "energy_while_off" and found.evidence["relay_forced_on"]
    assert "read on after a disconnect" in found.reason


def test_a_sustained_drop_is_a_change_point_on_its_day() -> None:
    def drop(meter: Meter, at: int) -> None:
        meter.set_load(meter.load_w * 4 // 10, at)

    # from day 18 on, each day's load (drawn each morning) falls to 40 %
    run = simulate({(day, 0): drop for day in range(18, DAYS)})
    found = change_point(run.series, AnomalySettings(), until_day=END // DAY_S)
    assert found is not None
    assert found.kind == "change_point" and found.severity == "medium"
    assert found.at == moment(18)
    assert found.evidence["after_per_day"] < 0.5 * found.evidence["before_per_day"]
    assert kinds(MeterData(run.series, [], [], [])) == ["change_point"]


def test_register_reset() -> None:
    run = simulate({(20, 30): lambda m, at: m.reset_energy(5, at)})
    (found,) = meter_anomalies(MeterData(run.series, [], [], []), END)
    assert found.kind == "register_reset" and found.evidence["new"] == 5
    assert found.at == moment(20, 30)


def test_current_while_the_register_stands_still() -> None:
    run = simulate()
    assert run.samples is not None
    current = run.samples.current_a  # the load the simulator draws
    register = run.samples.register.copy()
    register[500:520] = register[500]  # the register stops for 5 hours (magnet, bypassed CT)
    found = bypass("sim-1", Samples(run.samples.at, current, register), AnomalySettings())
    assert found is not None and found.kind == "bypass_suspected"
    assert found.evidence["register"] == int(register[500])
    assert float(np.min(current[500:520])) >= 0.5


def _longest_run(samples: Samples, settings: AnomalySettings) -> tuple[int, int] | None:
    """What ``bypass`` finds, reading by reading: the first longest run of readings that did
    not advance the register with current at them and at the one before; its reading before
    the run and the first reading at the run's last instant."""
    best: tuple[int, int] | None = None
    start: int | None = None
    for i in range(1, len(samples.at)):
        still = samples.register[i] == samples.register[i - 1]
        flowing = min(samples.current_a[i], samples.current_a[i - 1]) >= settings.min_current_a
        if still and flowing:
            start = i - 1 if start is None else start
            span = samples.at[i] - samples.at[start]
            if best is None or span > samples.at[best[1]] - samples.at[best[0]]:
                best = (start, i)
        else:
            start = None
    return best


@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0.0, 0.3, 0.5, 2.0]),
                          st.integers(0, 3)), max_size=40),
       st.sampled_from([0, 600, 1800]))  # fmt: skip
def test_bypass_finds_the_first_longest_run(
    readings: list[tuple[int, float, int]], min_s: int
) -> None:
    """The vectorised run search equals the reading-by-reading one, ties and shared instants
    included."""
    at = np.cumsum([600 * step for step, _, _ in readings], dtype=np.int64)
    register = np.cumsum([int(tick == 0) for _, _, tick in readings], dtype=np.int64)
    samples = Samples(at, np.asarray([c for _, c, _ in readings], dtype=float), register)
    settings = AnomalySettings(min_bypass_s=min_s)
    found, run = bypass("m", samples, settings), _longest_run(samples, settings)
    if run is None or int(at[run[1]] - at[run[0]]) < min_s:
        assert found is None
        return
    a, b = run
    assert found is not None and found.at == int(at[a])
    assert found.evidence["to"] == iso(int(at[b])) and found.evidence["register"] == register[a]
    assert found.evidence["mean_current_a"] == round(float(samples.current_a[a : b + 1].mean()), 3)


def test_imported_readings_disagreeing_with_the_agent() -> None:
    rows = [Mismatch(moment(3), 900, 1000, 1100, "distributor"),
            Mismatch(moment(4), 1500, 1200, 1300, "distributor")]  # fmt: skip
    found = import_mismatch("sim-1", rows)
    assert found is not None and found.kind == "import_mismatch"
    assert found.evidence["worst_reading"] == 1500 and found.evidence["readings"] == 2
    assert import_mismatch("sim-1", []) is None


def test_the_change_point_search_equals_ruptures_binary_segmentation() -> None:
    rnd = np.random.default_rng(5)
    for n in (14, 30, 61, 90):
        for _ in range(25):
            signal = rnd.normal(1000, 150, n)
            signal[rnd.integers(7, n - 6) :] *= rnd.uniform(0.3, 1.7)
            algo = ruptures.Binseg(model="l2", min_size=7, jump=1).fit(signal.reshape(-1, 1))
            assert best_split(signal, 7) == algo.predict(n_bkps=1)[0]
