"""Credit-control rules (pure): prompts, grace, emergency and friendly credit, protection."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.messages import CreditRules, FriendlyWindow
from protocol.rules import Decision, Memory, evaluate, is_friendly

UTCZ = ZoneInfo("UTC")
NAIROBI = ZoneInfo("Africa/Nairobi")  # UTC+3, no DST
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday
NIGHTS = FriendlyWindow(days=(0, 1, 2, 3, 4), start=time(16), end=time(8))


@dataclass
class Meter:
    """A meter driven through ``evaluate`` the way the agent does, applying each decision."""

    rules: CreditRules
    zone: ZoneInfo = UTCZ
    memory: Memory = field(default_factory=Memory)

    def at(self, balance: int, now: datetime) -> Decision:
        decision, self.memory = evaluate(balance, self.rules, self.zone, self.memory, now)
        return decision


def actions(meter: Meter, steps: list[tuple[int, datetime]]) -> list[str]:
    return [meter.at(b, t).action for b, t in steps]


# -- examples -------------------------------------------------------------------------------


def test_low_credit_prompts_once_per_crossing() -> None:
    meter = Meter(CreditRules(low_credit=(500, 100)))
    t = MONDAY_NOON
    seen = [(d.action, d.rule) for d in (meter.at(b, t) for b in (900, 499, 450, 300, 99, 50))]
    assert seen == [
        ("none", "ok"),
        ("prompt", "low_credit"),
        ("none", "ok"),
        ("none", "ok"),
        ("prompt", "low_credit"),
        ("none", "ok"),
    ]
    # a top-up above 500 re-arms both; falling past both at once prompts once (lowest named)
    assert meter.at(800, t).action == "none"
    decision = meter.at(40, t)
    assert (decision.action, decision.rule) == ("prompt", "low_credit")
    assert "100" in decision.reason
    assert meter.at(30, t).action == "none"


def test_exhaustion_prompts_then_cuts_after_grace() -> None:
    meter = Meter(CreditRules(grace_s=600, reconnect_above=200))
    t = MONDAY_NOON
    first = meter.at(-1, t)
    assert (first.action, first.rule) == ("prompt", "grace")
    assert meter.at(-5, t + timedelta(seconds=599)).action == "none"
    cut = meter.at(-6, t + timedelta(seconds=600))
    assert (cut.action, cut.rule) == ("disconnect", "exhausted")
    assert "-6" in cut.reason
    # no repeated disconnect while off, no reconnect until above the reconnect level
    assert actions(meter, [(-6, t + timedelta(hours=1)), (150, t + timedelta(hours=2))]) == [
        "none",
        "none",
    ]
    back = meter.at(201, t + timedelta(hours=3))
    assert (back.action, back.rule) == ("reconnect", "reconnect")


def test_a_top_up_during_grace_cancels_the_cut() -> None:
    meter = Meter(CreditRules(grace_s=600))
    t = MONDAY_NOON
    assert meter.at(-1, t).action == "prompt"
    assert meter.at(50, t + timedelta(seconds=300)).action == "none"
    # a new exhaustion starts a new grace period with its own prompt
    assert meter.at(-1, t + timedelta(seconds=700)).action == "prompt"
    assert meter.at(-1, t + timedelta(seconds=1000)).action == "none"
    assert meter.at(-1, t + timedelta(seconds=1300)).action == "disconnect"


def test_emergency_credit_moves_the_floor() -> None:
    meter = Meter(CreditRules(emergency_credit=300))
    t = MONDAY_NOON
    d = meter.at(-1, t)
    assert (d.action, d.rule) == ("prompt", "emergency")
    assert actions(meter, [(-200, t), (-300, t)]) == ["none", "none"]
    d = meter.at(-301, t)
    assert (d.action, d.rule) == ("disconnect", "exhausted")
    assert "emergency credit exhausted" in d.reason


def test_no_cut_in_friendly_hours_then_cut_when_they_end() -> None:
    meter = Meter(CreditRules(friendly=(NIGHTS,)), zone=NAIROBI)
    evening = datetime(2026, 11, 23, 12, 59, tzinfo=UTC)  # 15:59 in Nairobi, Monday
    assert meter.at(100, evening).action == "none"
    inside = evening + timedelta(minutes=2)  # 16:01 local: friendly, customer was in credit
    d = meter.at(-50, inside)
    assert (d.action, d.rule) == ("prompt", "friendly")
    assert meter.at(-5000, inside + timedelta(hours=8)).action == "none"  # 00:01 local
    morning = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 08:00 local Tuesday: window over
    d = meter.at(-6000, morning)
    assert (d.action, d.rule) == ("disconnect", "exhausted")


def test_no_friendly_credit_when_out_of_credit_as_the_window_began() -> None:
    meter = Meter(CreditRules(friendly=(NIGHTS,), emergency_credit=100), zone=NAIROBI)
    before = datetime(2026, 11, 23, 12, 59, tzinfo=UTC)
    assert meter.at(-20, before).rule == "emergency"  # on emergency credit, not in credit
    d = meter.at(-101, before + timedelta(minutes=2))  # inside the window
    assert d.action == "disconnect"
    assert "no friendly credit" in d.reason


def test_holidays_are_friendly_all_day_in_local_time() -> None:
    rules = CreditRules(holidays=(date(2026, 12, 25),))
    assert is_friendly(rules, NAIROBI, datetime(2026, 12, 24, 21, 30, tzinfo=UTC))  # 00:30 local
    assert not is_friendly(rules, NAIROBI, datetime(2026, 12, 25, 21, 30, tzinfo=UTC))
    meter = Meter(rules, zone=NAIROBI)
    xmas = datetime(2026, 12, 25, 9, 0, tzinfo=UTC)
    assert meter.at(10, xmas).action == "none"
    assert meter.at(-10, xmas + timedelta(hours=1)).rule == "friendly"
    assert meter.at(-10, datetime(2026, 12, 26, 0, 0, tzinfo=UTC)).action == "disconnect"


def test_wrapping_windows_follow_the_weekday_they_started_on() -> None:
    fri_night = FriendlyWindow(days=(4,), start=time(22), end=time(6))
    rules = CreditRules(friendly=(fri_night,))
    assert is_friendly(rules, UTCZ, datetime(2026, 11, 27, 23, 0, tzinfo=UTC))  # Fri 23:00
    assert is_friendly(rules, UTCZ, datetime(2026, 11, 28, 5, 59, tzinfo=UTC))  # Sat 05:59
    assert not is_friendly(rules, UTCZ, datetime(2026, 11, 28, 6, 0, tzinfo=UTC))
    assert not is_friendly(rules, UTCZ, datetime(2026, 11, 27, 5, 0, tzinfo=UTC))  # Fri 05:00


def test_protected_customers_are_never_cut() -> None:
    meter = Meter(CreditRules(protected=True, grace_s=0))
    t = MONDAY_NOON
    d = meter.at(-1, t)
    assert (d.action, d.rule) == ("prompt", "protected")
    assert (
        actions(meter, [(-(10**6), t + timedelta(days=d)) for d in range(1, 30)]) == ["none"] * 29
    )


def test_a_manual_cut_is_not_undone_by_the_rules() -> None:
    meter = Meter(CreditRules())
    meter.memory = meter.memory.model_copy(update={"relay": "disconnected", "cut_by_rules": False})
    assert meter.at(10_000, MONDAY_NOON).action == "none"


# -- properties -----------------------------------------------------------------------------

rules_st = st.builds(
    CreditRules,
    low_credit=st.lists(st.integers(-500, 2000), max_size=3).map(tuple),
    reconnect_above=st.integers(-1000, 1000),
    emergency_credit=st.integers(0, 500),
    grace_s=st.integers(0, 3600),
    friendly=st.lists(
        st.builds(
            FriendlyWindow,
            days=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True).map(tuple),
            start=st.times(),
            end=st.times(),
        ),
        max_size=2,
    ).map(tuple),
    protected=st.booleans(),
)
steps_st = st.lists(
    st.tuples(st.integers(-400, 600), st.integers(1, 7200)), min_size=1, max_size=60
)


def run(
    rules: CreditRules, start: int, steps: list[tuple[int, int]]
) -> list[tuple[int, datetime, Decision, str]]:
    """(balance, time, decision, relay before) for each poll; a step changes the balance by
    ``delta`` (negative: usage, positive: top-up) and advances the clock ``dt`` seconds."""
    meter = Meter(rules)
    balance, now = start, MONDAY_NOON
    out: list[tuple[int, datetime, Decision, str]] = []
    for delta, dt in steps:
        balance += delta
        now += timedelta(seconds=dt)
        relay = meter.memory.relay
        out.append((balance, now, meter.at(balance, now), relay))
    return out


@settings(max_examples=300, deadline=None)
@given(rules_st, st.integers(-1000, 3000), steps_st)
def test_safety_properties(rules: CreditRules, start: int, steps: list[tuple[int, int]]) -> None:
    floor = -rules.emergency_credit
    level = max(rules.reconnect_above, 0)
    last_switch = None
    for balance, _now, d, relay in run(rules, start, steps):
        if d.action == "disconnect":
            assert not rules.protected, "a protected customer was cut off"
            assert balance < floor, "cut off while within the floor"
            assert relay == "connected"
            assert last_switch != "disconnect", "disconnect repeated without a reconnect"
            last_switch = "disconnect"
        elif d.action == "reconnect":
            assert balance > level >= floor, "reconnected below the reconnect level"
            assert relay == "disconnected"
            last_switch = "reconnect"


@settings(max_examples=300, deadline=None)
@given(rules_st, st.integers(-1000, 3000), steps_st)
def test_grace_and_friendly_are_honoured(
    rules: CreditRules, start: int, steps: list[tuple[int, int]]
) -> None:
    floor = -rules.emergency_credit
    exhausted_since = None
    for balance, now, d, _relay in run(rules, start, steps):
        if balance >= floor:
            exhausted_since = None
        elif exhausted_since is None:
            exhausted_since = now
        if d.action == "disconnect":
            assert exhausted_since is not None
            assert now >= exhausted_since + timedelta(seconds=rules.grace_s)
            if rules.grace_s > 0:
                assert exhausted_since < now, "cut off without a grace prompt first"


@settings(max_examples=200, deadline=None)
@given(st.integers(-200, 1000), st.integers(0, 3000), steps_st)
def test_one_prompt_per_downward_crossing(
    threshold: int, start: int, steps: list[tuple[int, int]]
) -> None:
    rules = CreditRules(low_credit=(threshold,), emergency_credit=10**6)  # never exhausted
    meter = Meter(rules)
    prompts = int(meter.at(start, MONDAY_NOON).rule == "low_credit")
    crossings = int(start < threshold)
    previous = start
    balance, now = start, MONDAY_NOON
    for delta, dt in steps:
        balance += delta
        now += timedelta(seconds=dt)
        d = meter.at(balance, now)
        if previous >= threshold > balance:
            crossings += 1
        if d.rule == "low_credit":
            prompts += 1
        previous = balance
    assert prompts == crossings


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.integers(0, 300), st.lists(st.integers(-300, 300), max_size=80))
def test_no_chatter_around_the_thresholds(
    reconnect_above: int, emergency: int, deltas: list[int]
) -> None:
    """The relay switches at most once per excursion of the balance from below the cut-off
    floor to above the reconnect level and back: never twice for one wobble."""
    meter = Meter(CreditRules(reconnect_above=reconnect_above, emergency_credit=emergency))
    balance, now = 0, MONDAY_NOON
    low, excursions, switches = False, 0, 0
    for delta in deltas:
        balance += delta
        now += timedelta(seconds=10)
        if (not low and balance < -emergency) or (low and balance > reconnect_above):
            low, excursions = not low, excursions + 1
        if meter.at(balance, now).action in ("reconnect", "disconnect"):
            switches += 1
    assert switches <= excursions


def test_a_hub_reconnect_holds_off_the_rules_until_credit_returns() -> None:
    meter = Meter(CreditRules())
    meter.memory = meter.memory.model_copy(update={"hold": True})
    assert meter.at(-500, MONDAY_NOON).rule == "hold"
    assert meter.at(-900, MONDAY_NOON + timedelta(days=1)).action == "none"
    assert meter.at(10, MONDAY_NOON + timedelta(days=2)).action == "none"  # hold ends here
    assert meter.at(-1, MONDAY_NOON + timedelta(days=3)).action == "disconnect"


def test_alternate_account_credit_is_drawn_before_any_cut_off() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    rules = CreditRules(alternate_available=500)
    connected = Memory(relay="connected")
    decision, _ = evaluate(-499, rules, ZoneInfo("UTC"), connected, now)
    assert decision.action != "disconnect"
    decision, _ = evaluate(-501, rules, ZoneInfo("UTC"), connected, now)
    assert decision.action == "disconnect"
