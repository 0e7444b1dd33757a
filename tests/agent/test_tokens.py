"""The gateway's token desk (agent.tokens) on a real agent store, credit book and outbox:
reference-encoder tokens apply, the reasons (used, too_old, invalid, cancelled), the lockout
with its growing delay, the redemption event in the outbox, and the hub's later states neither
dropping nor doubling a token's credit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpaygo import OpenPAYGOTokenEncoder, TokenType

from agent.credit import CreditBook
from agent.store import AgentStore
from agent.tokens import TokenDesk
from agent.uplink.outbox import Outbox
from protocol.messages import CreditState, TokenSetup
from protocol.tokens import Lockout, MeterSecret, TokenRejectedError, encode, seal
from tests.agent.test_credit import FLAT

KEY = "ab" * 32
SECRET = MeterSecret("a29ab82edc5fbbc41ec9530f6dac86b1", 123456789)
SEALED = seal(KEY, "m1", SECRET)


def state(
    balance: int, settled: tuple[int, ...] = (), cancelled: tuple[int, ...] = ()
) -> CreditState:
    tokens = TokenSetup(sealed=SEALED, settled=settled, cancelled=cancelled)
    return CreditState(balance=balance, as_of_seq=0, tariff=FLAT, tokens=tokens)


class Desk:
    def __init__(self, path: Path) -> None:
        self.store = AgentStore(path)
        self.outbox = Outbox(self.store, 1000)
        self.credit = CreditBook(self.store)
        self.desk = TokenDesk(self.store, lambda: (KEY,), self.credit, self.outbox,
                              Lockout(free=3, base_s=10, max_s=60))  # fmt: skip

    def events(self) -> list[tuple[str, str]]:
        with self.store.read() as conn:
            rows = conn.execute("SELECT body FROM outbox WHERE kind = 'event' ORDER BY id")
            bodies = [json.loads(b) for (b,) in rows]
        return [(b["kind"], b.get("reason", "")) for b in bodies]


@pytest.fixture
def d(tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(tmp_path / "agent.db")
    desk.credit.apply("m1", state(500))
    try:
        yield desk
    finally:
        desk.store.close()


def reason(d: Desk, code: str, now: float = 0.0) -> str:
    with pytest.raises(TokenRejectedError) as exc:
        d.desk.redeem("m1", code, now)
    return exc.value.reason


def test_reference_encoder_token_applies_and_is_reported(d: Desk) -> None:
    count, code = OpenPAYGOTokenEncoder.generate_token(
        secret_key=SECRET.key, count=0, value=1250, token_type=TokenType.ADD_TIME,
        starting_code=SECRET.starting_code, extended_token=True,
    )  # fmt: skip
    applied = d.desk.redeem("m1", code, 0.0)
    assert (applied.amount, applied.count, applied.balance) == (1250, count, 1750)
    assert d.credit.balance("m1") == 1750
    assert d.events()[-1][0] == "token_redeemed"
    assert reason(d, code) == "used"
    assert d.credit.balance("m1") == 1750


def test_an_old_token_after_a_newer_one_is_too_old(d: Desk) -> None:
    count, old = encode(SECRET, 0, 100)
    for _ in range(9):
        count, newest = encode(SECRET, count, 100)
    d.desk.redeem("m1", newest, 0.0)
    assert reason(d, old) == "too_old"


def test_cancelled_and_invalid(d: Desk) -> None:
    count, code = encode(SECRET, 0, 100)
    d.credit.apply("m1", state(500, cancelled=(count,)))
    assert reason(d, code) == "cancelled"
    assert reason(d, "000000000000", 100.0) == "invalid"
    assert d.credit.balance("m1") == 500


def test_lockout_after_repeated_bad_entries_with_a_growing_delay(d: Desk) -> None:
    _, good = encode(SECRET, 0, 100)
    for _ in range(3):
        assert reason(d, "111111111111", 0.0) == "invalid"
    assert reason(d, good, 5.0) == "locked_out"  # 10 s from the third failure
    assert reason(d, "111111111111", 10.0) == "invalid"  # the fourth: 20 s
    assert reason(d, good, 29.0) == "locked_out"
    assert d.desk.redeem("m1", good, 30.0).amount == 100
    assert reason(d, "111111111111", 31.0) == "invalid"  # reset by the good one
    kinds = [k for k, _ in d.events()]
    assert kinds.count("token_rejected") == 5 and kinds.count("token_redeemed") == 1


def test_the_hubs_states_neither_drop_nor_double_a_token(d: Desk) -> None:
    count, code = encode(SECRET, 0, 300)
    d.desk.redeem("m1", code, 0.0)
    assert d.credit.balance("m1") == 800
    d.credit.apply("m1", state(450))  # usage charged at the hub, token not yet settled
    assert d.credit.balance("m1") == 750
    d.credit.apply("m1", state(750, settled=(count,)))  # settled: the balance holds it
    assert d.credit.balance("m1") == 750


def test_no_key_yet_is_invalid(tmp_path: Path) -> None:
    desk = Desk(tmp_path / "other.db")
    try:
        _, code = encode(SECRET, 0, 100)
        with pytest.raises(TokenRejectedError) as exc:
            desk.desk.redeem("m1", code, 0.0)
        assert exc.value.reason == "invalid"
    finally:
        desk.store.close()


def test_an_older_snapshot_of_the_same_seq_does_not_forget_a_cancellation(d: Desk) -> None:
    count, code = encode(SECRET, 0, 100)
    assert d.credit.apply("m1", state(500, cancelled=(count,)))
    assert not d.credit.apply("m1", state(600))  # read before the cancellation, sent after it
    assert reason(d, code) == "cancelled"
    assert d.credit.balance("m1") == 500


def test_a_secret_sealed_with_the_key_being_rotated_out_still_opens(d: Desk) -> None:
    """During a credential rotation the meter's secret may still be sealed with the replaced
    key: the desk tries each key the gateway honours, current first."""
    d.desk._keys = lambda: ("cd" * 32, KEY)  # the new key first; the state is sealed with KEY
    count, code = encode(SECRET, 0, 300)
    assert d.desk.redeem("m1", code, 0.0).count == count
    d.desk._keys = lambda: ("cd" * 32,)  # the replaced key no longer honoured
    _, later = encode(SECRET, count, 300)
    assert reason(d, later) == "invalid"
