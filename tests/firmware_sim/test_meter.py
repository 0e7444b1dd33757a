"""Meter physics, pure: exact energy, relay, tamper, reset, profiles, the simulated clock."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.clock import NS_PER_S, ManualClock, SimClock
from firmware_sim.errors import ConfigError
from firmware_sim.meter import UNITS_PER_WH, Meter
from firmware_sim.profile import DAY_NS, parse_profile

HOUR = 3600 * NS_PER_S


def test_energy_is_load_times_time_exactly() -> None:
    meter = Meter(at_ns=0, load_w=1000)
    assert meter.energy_wh(HOUR) == 1000
    assert meter.energy_units == 1000 * 1000 * HOUR
    odd = 7 * NS_PER_S + 123
    meter = Meter(at_ns=5, load_w=1234)
    meter.advance(5 + odd)
    assert meter.energy_units == 1234 * 1000 * odd


@given(st.lists(st.tuples(st.integers(0, 50_000), st.integers(0, 10**13)), max_size=30))
def test_piecewise_loads_sum_exactly(steps: list[tuple[int, int]]) -> None:
    meter = Meter(at_ns=0)
    now, expected = 0, 0
    for load, duration in steps:
        meter.set_load(load, now)
        now += duration
        expected += load * 1000 * duration
    meter.advance(now)
    assert meter.energy_units == expected
    assert meter.energy_wh(now) == expected // UNITS_PER_WH


def test_relay_off_freezes_energy_and_zeroes_power() -> None:
    meter = Meter(at_ns=0, load_w=2000)
    meter.set_supply(False, HOUR)
    assert meter.energy_wh(HOUR) == 2000
    assert meter.energy_wh(5 * HOUR) == 2000
    reading = meter.reading(5 * HOUR)
    assert reading.power_w == 0
    assert reading.current_a == 0
    meter.set_supply(True, 5 * HOUR)
    assert meter.energy_wh(6 * HOUR) == 4000


def test_tamper_bypass_keeps_energy_flowing_with_the_relay_off() -> None:
    meter = Meter(at_ns=0, load_w=500)
    meter.set_supply(False, 0)
    meter.set_tamper(True, 0)
    assert not meter.supply_on
    assert meter.power_w(HOUR) == 500
    assert meter.energy_wh(2 * HOUR) == 1000
    meter.set_tamper(False, 2 * HOUR)
    assert meter.energy_wh(3 * HOUR) == 1000


def test_a_frozen_register_stands_still_while_current_flows() -> None:
    meter = Meter(at_ns=0, load_w=2000)
    assert meter.energy_wh(HOUR) == 2000
    meter.set_stuck(True, HOUR)
    assert meter.energy_wh(3 * HOUR) == 2000  # frozen
    reading = meter.reading(3 * HOUR)
    assert reading.power_w == 2000 and reading.current_a > 9  # the load still draws
    assert reading.energy_wh == 2000
    meter.set_stuck(False, 3 * HOUR)
    assert meter.energy_wh(4 * HOUR) == 4000  # counts again, the frozen hours lost
    assert not meter.tamper_bypass  # the relay bypass is another tamper


def test_reset_energy_restarts_the_register() -> None:
    meter = Meter(at_ns=0, load_w=1000)
    meter.reset_energy(0, HOUR)
    assert meter.energy_wh(HOUR) == 0
    meter.reset_energy(50_000, HOUR)
    assert meter.energy_wh(2 * HOUR) == 51_000


def test_earlier_times_change_nothing() -> None:
    meter = Meter(at_ns=HOUR, load_w=1000)
    meter.advance(0)
    assert meter.energy_units == 0
    assert meter.energy_wh(2 * HOUR) == 1000
    assert meter.energy_wh(HOUR) == 1000


def test_readings_are_consistent_with_the_load() -> None:
    meter = Meter(at_ns=0, load_w=2300, power_factor_milli=1000)
    reading = meter.reading(0)
    assert reading.voltage_v == pytest.approx(230, rel=0.005)
    assert reading.current_a == pytest.approx(2300 / reading.voltage_v)
    assert reading.frequency_hz == pytest.approx(50, abs=0.05)
    three = Meter(at_ns=0, load_w=3000, phases=3, power_factor_milli=900).reading(0)
    assert three.current_a == pytest.approx(1000 / three.voltage_v / 0.9)
    assert three.apparent_va == pytest.approx(3000 / 0.9)


@pytest.mark.parametrize("load", [-1, 2**32])
def test_bad_loads_are_refused(load: int) -> None:
    with pytest.raises(ConfigError):
        Meter(at_ns=0, load_w=load)


def test_daily_profile_integrates_exactly() -> None:
    profile = parse_profile("00=0.5,12=1.5")
    assert profile.factor_at(HOUR) == 500
    assert profile.factor_at(13 * HOUR) == 1500
    assert profile.integral(DAY_NS) == profile.day_total == 500 * 12 * HOUR + 1500 * 12 * HOUR
    meter = Meter(at_ns=0, load_w=1000, profile=profile)
    assert meter.energy_wh(DAY_NS) == 24_000
    assert meter.energy_wh(DAY_NS + 13 * HOUR) == 24_000 + 6000 + 1500


def test_profile_wraps_around_midnight_and_has_presets() -> None:
    profile = parse_profile("06=1,18=0")
    assert profile.factor_at(3 * HOUR) == 0
    assert profile.factor_at(7 * HOUR) == 1000
    assert profile.integral(DAY_NS) == 12 * HOUR * 1000
    assert parse_profile("household").factor_at(18 * HOUR) == 1600


@pytest.mark.parametrize("text", ["", "7", "24=1", "07:60=1", "07=x", "07=-1", "07=0.0001"])
def test_bad_profiles_are_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_profile(text)


def test_sim_clock_scales_real_time_and_rebases_on_speed_change() -> None:
    real = ManualClock(100.0)
    clock = SimClock(60, source=real, start_epoch_ns=0)
    real.advance(1.5)
    assert clock.now_ns() == 90 * NS_PER_S
    clock.set_speed(Fraction(1, 2))
    real.advance(4)
    assert clock.now_ns() == 92 * NS_PER_S
    clock.set_speed(0)
    real.advance(1000)
    assert clock.now_ns() == 92 * NS_PER_S


def test_meter_driven_by_an_injected_clock() -> None:
    real = ManualClock()
    clock = SimClock(3600, source=real, start_epoch_ns=0)
    meter = Meter(at_ns=clock.now_ns(), load_w=1500)
    real.advance(2)  # two real seconds = two simulated hours
    assert meter.energy_wh(clock.now_ns()) == 3000
