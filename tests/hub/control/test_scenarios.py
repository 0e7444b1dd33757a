"""Credit control end to end on the hub: a real ledger (SQLite and PostgreSQL), commands through
Mosquitto, time from an injected clock. Ledger invariants hold after every scenario."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import Session

from hub import ledger
from hub.db import run_tx
from hub.events import record_event
from hub.ledger import UsagePosting
from hub.ledger.sql import customers, meters
from tests.hub.control.scene import Clock, Scene, alternate_of

SceneOf = Callable[..., Scene]


def test_exhausted_prompts_then_grace_then_disconnect_once(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=1000, rules={"low_credit": [500], "grace_s": 600, "reconnect_above": 200})
    s.use(600)  # 400 left: below the low-credit threshold
    assert s.kinds() == ["low_credit"]
    assert s.events("low_credit")[0]["data"]["rule"] == "low_credit"
    assert [c["action"] for c in s.commands(at_least=1)] == ["prompt"]

    s.use(500)  # -100: exhausted, grace starts with a prompt, no cut-off yet
    grace = s.events("low_credit")[-1]
    assert grace["data"]["rule"] == "grace" and "600 s" in grace["reason"]
    clock.advance(seconds=300)
    assert s.control.tick() == []
    s.use(10)  # usage keeps arriving in the grace period: posted, no decision
    assert "disconnect" not in s.kinds()

    clock.advance(seconds=301)
    done = s.control.tick()
    assert [(a.kind, a.rule) for a in done] == [("disconnect", "exhausted")]
    event = s.events("disconnect")[0]
    assert event["meter"] == s.meter and "credit exhausted" in event["reason"]
    assert event["data"]["rule"] == "exhausted" and event["data"]["by"] == "credit_control"
    cut = s.commands("disconnect", at_least=1)
    assert cut[0]["id"] == event["data"]["command_id"] and "rule: exhausted" in cut[0]["reason"]

    # the same exhaustion again (more usage, ticks): no second hub command
    s.use(50)
    clock.advance(hours=2)
    s.control.tick()
    assert len(s.events("disconnect")) == 1
    assert len(s.commands("disconnect")) == 1
    assert s.invariants() == {}  # usage past the floor is debt, not a violation

    s.topup(500)  # -160 + 500 = 340 > 200: reconnect (hysteresis above the cut-off)
    assert [e["data"]["rule"] for e in s.events("reconnect")] == ["reconnect"]
    assert s.commands("reconnect", at_least=1)[0]["meter"] == s.meter
    credit = s.commands("credit", at_least=1)[-1]
    assert credit["params"]["balance"] == 340
    assert s.invariants() == {}


def test_tick_reaches_a_meter_paid_through_a_split_rule(scene_of: SceneOf, clock: Clock) -> None:
    """The meter's own customer is in credit; the account its split rule debits is not, so
    the grace period must still end in a cut-off on the tick."""
    s = scene_of(balance=1000, rules={"grace_s": 600})
    payer = f"payer-{s.meter}"

    def setup(session: Session) -> None:
        ledger.create_customer(session, payer, payer, "USD")
        conn = session.connection()
        rule = {"accounts": {payer: 1}}
        conn.execute(update(meters).where(meters.c.id == s.meter).values(split_rule=rule))
        flags = {"credit_rules": {"grace_s": 600}}
        conn.execute(update(customers).where(customers.c.id == payer).values(flags=flags))

    run_tx(s.engine, setup)
    s.seq += 1
    charge = [(payer, -100), ("provider:gen", 100)]
    posting = UsagePosting(s.meter, s.seq, s.register, s.register + 100, charge, "USD")
    run_tx(s.engine, lambda session: ledger.post_usage_batch(session, [posting]))
    s.control.after_postings([s.meter])  # exhausted: grace starts
    assert "disconnect" not in s.kinds()
    clock.advance(seconds=601)
    done = s.control.tick()
    assert [(a.kind, a.meter_id) for a in done] == [("disconnect", s.meter)]
    assert s.invariants() == {}


def test_reconnect_needs_the_balance_above_the_threshold(scene_of: SceneOf) -> None:
    s = scene_of(balance=100, rules={"reconnect_above": 500})
    s.use(150)  # -50, no grace: cut at once
    assert s.kinds() == ["disconnect"]
    s.topup(300)  # 250: above the cut-off floor but not above 500
    assert "reconnect" not in s.kinds()
    s.topup(300)  # 550
    assert s.kinds()[-1] == "reconnect"
    assert s.invariants() == {}


def test_alternate_account_drawn_before_any_cut_off(scene_of: SceneOf) -> None:
    s = scene_of(balance=100, rules={"alternate_draw": 300}, alternate=(1000, 0))
    alt = alternate_of(s)
    s.use(150)  # -50: the fixed amount is drawn at once
    assert s.kinds() == ["alternate_draw"]
    [(_, moved, meta)] = s.entries("alternate_draw")
    assert moved == {alt: -300, s.customer: 300}
    assert meta["balance_before"] == -50
    assert s.balance() == 250 and s.balance(alt) == 700
    event = s.events("alternate_draw")[0]
    assert event["data"]["amount"] == 300 and event["meter"] == s.meter
    assert s.commands("credit", at_least=1)[-1]["params"]["balance"] == 250  # resent
    assert s.commands() == []  # supply uninterrupted: no prompt, no disconnect
    assert s.invariants() == {}


def test_alternate_draw_stays_within_the_alternate_limits(scene_of: SceneOf) -> None:
    s = scene_of(balance=100, rules={"alternate_draw": "needed", "alternate_limit": 1000},
                 alternate=(250, 0))  # fmt: skip
    alt = alternate_of(s)
    s.use(500)  # -400: needs 400, the alternate account has 250 above its floor
    assert s.kinds() == ["alternate_draw", "disconnect"]  # drawn first, then cut
    [(_, moved, _meta)] = s.entries("alternate_draw")
    assert moved == {alt: -250, s.customer: 250}
    assert s.balance(alt) == 0 and s.balance() == -150
    s.use(10)  # nothing left to draw: no second draw, no second cut
    assert s.kinds() == ["alternate_draw", "disconnect"]
    assert s.invariants() == {}


def test_alternate_needed_and_capped_by_the_rule_limit(scene_of: SceneOf) -> None:
    s = scene_of(balance=0, rules={"alternate_draw": "needed", "alternate_limit": 120,
                                   "reconnect_above": 0}, alternate=(50, -1000))  # fmt: skip
    alt = alternate_of(s)
    s.use(100)  # needs 100: drawn in full, the alternate floor -1000 allows it
    assert s.entries("alternate_draw")[0][1] == {alt: -100, s.customer: 100}
    s.use(300)  # needs 300, the rule caps one draw at 120
    assert s.entries("alternate_draw")[1][1] == {alt: -120, s.customer: 120}
    assert s.balance(alt) == -170
    assert s.invariants() == {}


def test_friendly_window_no_cut_inside_cut_after(scene_of: SceneOf, clock: Clock) -> None:
    nights = [{"days": [0, 1, 2, 3, 4], "start": "16:00", "end": "08:00"}]
    # Nairobi is UTC+3: the window is 13:00-05:00 UTC
    s = scene_of(balance=300, rules={"friendly": nights}, timezone="Africa/Nairobi")
    clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))  # Monday 15:00 local, in credit
    s.use(100)
    clock.set(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # 17:00 local: friendly hours
    s.use(500)  # -300: exhausted inside the window
    assert s.kinds() == ["low_credit"] and s.events()[0]["data"]["rule"] == "friendly"
    clock.set(datetime(2026, 11, 24, 1, 0, tzinfo=UTC))  # 04:00 local
    s.use(100)
    s.control.tick()
    assert "disconnect" not in s.kinds()
    clock.set(datetime(2026, 11, 24, 5, 1, tzinfo=UTC))  # 08:01 local: the window is over
    s.control.tick()
    assert s.kinds()[-1] == "disconnect"
    assert s.events("disconnect")[0]["data"]["rule"] == "exhausted"
    assert s.invariants() == {}  # friendly credit is usage past the floor: allowed


def test_no_friendly_credit_unless_in_credit_when_the_window_began(
    scene_of: SceneOf, clock: Clock
) -> None:
    nights = [{"days": [0, 1, 2, 3, 4], "start": "16:00", "end": "08:00"}]
    s = scene_of(balance=100, rules={"friendly": nights})
    clock.set(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    s.use(100)  # exactly 0 before the window: not in credit
    clock.set(datetime(2026, 11, 23, 17, 0, tzinfo=UTC))
    s.use(20)
    [event] = s.events("disconnect")
    assert "no friendly credit" in event["reason"]


def test_holiday_is_friendly(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=100, rules={"holidays": ["2026-12-25"]})
    clock.set(datetime(2026, 12, 24, 23, 0, tzinfo=UTC))
    s.use(10)  # in credit the evening before
    clock.set(datetime(2026, 12, 25, 10, 0, tzinfo=UTC))
    s.use(300)
    assert "disconnect" not in s.kinds()
    clock.set(datetime(2026, 12, 26, 0, 1, tzinfo=UTC))
    s.control.tick()
    assert s.kinds()[-1] == "disconnect"


def test_protected_customer_never_cut_operator_alert(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=100, protected=True, rules={"grace_s": 60})
    s.use(400)
    alerts = s.events("operator_alert")
    assert len(alerts) == 1 and "protected" in alerts[0]["reason"]
    for _ in range(3):
        clock.advance(hours=6)
        s.use(100)
        s.control.tick()
    assert "disconnect" not in s.kinds()
    assert len(s.events("operator_alert")) == 1  # one alert per exhaustion
    assert s.commands("disconnect") == []
    assert s.balance() == -600 and s.invariants() == {}


def test_emergency_credit_then_repaid_with_debt_recovery_share(scene_of: SceneOf) -> None:
    s = scene_of(balance=100, rules={"emergency_credit": 500, "debt_recovery_share": "0.25"})
    s.use(300)  # -200: emergency credit taken, the floor moves, no cut-off
    assert s.kinds() == ["emergency_credit", "low_credit"] and s.floor() == -500
    assert s.events("low_credit")[0]["data"]["rule"] == "emergency"  # the customer is told
    s.use(400)  # -600: past the emergency credit too
    assert s.kinds()[-1] == "disconnect"
    s.use(900)  # usage recorded after the cut-off arrives: -1500, debt of 1000
    assert s.invariants() == {}

    s.topup(2000)
    # emergency 500 repaid in full first; 25 % of 2000 = 500 of the 1000 debt; 1000 credit
    [(_, moved, meta)] = s.entries("transfer")
    debt = f"debt:{s.customer}"
    assert moved == {s.customer: 500, debt: -500}
    how = meta["recovery"]
    assert (how["emergency_repaid"], how["debt_recovered"], how["credit"]) == (500, 500, 1000)
    assert (how["debt_moved"], how["debt_outstanding"]) == (1000, 500)
    assert s.balance() == 1000 and s.balance(debt) == -500
    assert s.floor() == 0  # repaid: the floor is back
    assert "emergency_repaid" in s.kinds() and s.kinds()[-1] == "reconnect"

    s.topup(1000)  # the next top-up keeps recovering debt: 250 of it
    assert s.entries("transfer")[-1][1] == {s.customer: -250, debt: 250}
    assert s.balance() == 1750 and s.balance(debt) == -250
    assert s.invariants() == {}

    s.use(1800)  # a new exhaustion: emergency credit is available again
    assert s.kinds()[-2:] == ["emergency_credit", "low_credit"] and s.floor() == -500


def test_partial_topup_keeps_emergency_outstanding(scene_of: SceneOf) -> None:
    s = scene_of(balance=0, rules={"emergency_credit": 500})
    s.use(400)
    assert s.floor() == -500
    s.topup(300)  # -100: emergency not yet repaid, the floor stays down
    assert s.floor() == -500 and s.balance() == -100
    s.topup(100)
    assert s.floor() == 0
    assert s.invariants() == {}


def test_recovery_runs_once_per_topup(scene_of: SceneOf) -> None:
    s = scene_of(balance=0, rules={"debt_recovery_share": "0.25"})
    s.use(400)  # cut; debt of 400 at the next top-up
    result = s.topup(1000)
    s.control.after_topup(s.customer, result.entry_id)  # the API retried its hook
    assert len(s.entries("transfer")) == 1
    assert len(s.events("debt_recovery")) == 1
    # 250 of the 400 debt recovered, 150 still owed on the debt account, 750 credit
    assert s.balance() == 750 and s.balance(f"debt:{s.customer}") == -150
    assert s.invariants() == {}


def test_recovery_is_committed_with_the_topup(scene_of: SceneOf) -> None:
    """The API posts the recovery in the top-up's transaction: a hub that dies right after
    the commit (before any after-commit hook) has still recovered the debt, once."""
    s = scene_of(balance=0, rules={"debt_recovery_share": "0.25"})
    s.use(400)

    def work(session: Session) -> ledger.TopupResult:
        result = ledger.post_topup(session, s.customer, 1000, idempotency_key="crash")
        s.control.recover(session, s.customer, result.entry_id)
        return result

    result = run_tx(s.engine, work)  # nothing runs after the commit
    assert s.balance() == 750 and s.balance(f"debt:{s.customer}") == -150
    s.control.after_topup(s.customer, result.entry_id)  # the hook, if it ran, adds nothing
    assert len(s.entries("transfer")) == 1 and len(s.events("debt_recovery")) == 1
    assert s.invariants() == {}


def test_operator_cut_is_not_undone_by_a_topup(scene_of: SceneOf) -> None:
    s = scene_of(balance=1000, rules={"reconnect_above": 0})
    command_id, status, _event = s.control.operator(s.meter, "disconnect", "meter tampering",
                                                   by={"key_id": 7})  # fmt: skip
    assert status == "queued"
    [event] = s.events("disconnect")
    assert event["reason"] == "meter tampering"
    assert event["data"]["by"] == "operator" and event["data"]["key_id"] == 7
    assert s.commands("disconnect", at_least=1)[0]["id"] == command_id
    s.topup(500)
    assert "reconnect" not in s.kinds()  # a manual cut-off waits for the operator
    s.control.operator(s.meter, "reconnect", "inspected")
    assert s.kinds()[-1] == "reconnect"
    assert s.events("reconnect")[0]["data"]["by"] == "operator"
    assert len(s.commands("reconnect", at_least=1)) == 1


def test_operator_reconnect_of_an_exhausted_meter_restarts_grace(
    scene_of: SceneOf, clock: Clock
) -> None:
    s = scene_of(balance=0, rules={"grace_s": 600})
    s.use(100)
    clock.advance(seconds=601)
    s.control.tick()
    assert s.kinds()[-1] == "disconnect"
    s.control.operator(s.meter, "reconnect", "customer promised to pay")
    clock.advance(seconds=10)
    s.use(10)  # a fresh grace period from now: prompt, not a cut
    assert s.kinds()[-1] == "low_credit"
    clock.advance(seconds=601)
    s.control.tick()
    assert s.kinds()[-1] == "disconnect"
    assert len(s.events("disconnect")) == 2


def test_topping_up_the_alternate_account_draws_and_reconnects(scene_of: SceneOf) -> None:
    s = scene_of(balance=100, rules={"alternate_draw": "needed"}, alternate=(0, 0))
    alt = alternate_of(s)
    s.use(300)  # -200 and nothing to draw: cut off
    assert s.kinds() == ["disconnect"]
    s.topup(1000, account=alt)  # the sponsor pays in: the customer draws what it needs
    [(_, moved, _meta)] = s.entries("alternate_draw")
    assert moved == {alt: -201, s.customer: 201}  # back above the reconnect level 0
    assert s.kinds()[-2:] == ["alternate_draw", "reconnect"]
    assert s.commands("reconnect", at_least=1)
    assert s.invariants() == {}


def test_concurrent_evaluations_cut_once(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=100, rules={"grace_s": 60})
    s.use(150)  # exhausted: the grace prompt
    clock.advance(seconds=61)
    with ThreadPoolExecutor(8) as pool:  # ingest, the API and the scheduler at once
        list(pool.map(lambda _: s.control.after_postings([s.meter]), range(16)))
    assert s.kinds().count("disconnect") == 1
    assert len(s.commands("disconnect", at_least=1)) == 1
    assert s.invariants() == {}


def test_no_cut_while_the_alternate_account_can_still_be_drawn(
    scene_of: SceneOf, clock: Clock
) -> None:
    s = scene_of(balance=100, rules={"alternate_draw": 100}, alternate=(250, 0))
    alt = alternate_of(s)
    s.use(300)  # -200: one draw of the rule's 100, -100 left, 150 still in the alternate
    assert s.kinds() == ["alternate_draw"] and s.balance() == -100
    clock.advance(minutes=1)
    s.control.tick()  # the next evaluation draws again
    assert s.kinds() == ["alternate_draw", "alternate_draw"] and s.balance() == 0
    s.use(100)  # -100: the last 50 is drawn, nothing is left: now the cut-off
    assert s.kinds()[-2:] == ["alternate_draw", "disconnect"]
    assert s.balance(alt) == 0 and s.balance() == -50
    assert s.invariants() == {}


def test_agent_cut_first_offline_hub_still_one_command(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=100, rules={"grace_s": 60})
    s.use(150)  # the hub: grace prompt

    def agent_cut(session: Session) -> None:  # what ingest stores when the agent reports
        data = {"cause": "credit", "rule": "exhausted", "gateway": s.gateway}
        record_event(session, "disconnect", meter_id=s.meter, reason="exhausted", data=data)
        session.connection().execute(update(meters).where(meters.c.id == s.meter)
                                     .values(relay="off"))  # fmt: skip

    run_tx(s.engine, agent_cut)
    clock.advance(seconds=61)
    for _ in range(3):
        s.use(5)
        s.control.tick()
    hub_cuts = [e for e in s.events("disconnect") if e["data"].get("by") == "credit_control"]
    # one cut-off, one event: the hub's decision joins the gateway's report of it
    assert len(hub_cuts) == 1 and len(s.events("disconnect")) == 1
    assert hub_cuts[0]["data"]["sources"] == ["credit_control", "gateway"]
    assert len(s.commands("disconnect", at_least=1)) == 1
    s.topup(1000)
    assert s.kinds()[-1] == "reconnect" and s.invariants() == {}
