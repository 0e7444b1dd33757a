"""Offline top-up tokens (protocol.tokens): interop with the openpaygo reference encoder and
decoder, the used-counts window, the reasons, and the lockout."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType

from protocol.tokens import (
    MAX_TOKEN_VALUE,
    TOKEN_DIGITS,
    Lockout,
    MeterSecret,
    TokenRejectedError,
    encode,
    redeem,
    seal,
    unseal,
)

SECRET = MeterSecret("a29ab82edc5fbbc41ec9530f6dac86b1", 123456789)


def test_reference_encoder_tokens_redeem_here() -> None:
    count, token = OpenPAYGOTokenEncoder.generate_token(
        secret_key=SECRET.key, count=0, value=1250, token_type=TokenType.ADD_TIME,
        starting_code=SECRET.starting_code, extended_token=True,
    )  # fmt: skip
    got = redeem(SECRET, token, 0, [])
    assert (got.amount, got.count) == (1250, count)


def test_our_tokens_decode_in_the_reference_decoder() -> None:
    count, token = encode(SECRET, 0, 999)
    assert len(token) == TOKEN_DIGITS
    value, kind, decoded, _ = OpenPAYGOTokenDecoder.decode_token(
        token=token, secret_key=SECRET.key, count=0, used_counts=[],
        starting_code=SECRET.starting_code,
    )  # fmt: skip
    assert (value, kind, decoded) == (999, TokenType.ADD_TIME, count)


def test_same_token_twice_is_used() -> None:
    _, token = encode(SECRET, 0, 100)
    first = redeem(SECRET, token, 0, [])
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, token, first.last_count, first.used_counts, redeemed={first.digits})
    assert exc.value.reason == "used"


def test_an_old_token_inside_the_window_still_redeems_once() -> None:
    c1, old = encode(SECRET, 0, 100)
    _, new = encode(SECRET, c1, 200)
    state = redeem(SECRET, new, 0, [])
    got = redeem(SECRET, old, state.last_count, state.used_counts)
    assert got.amount == 100
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, old, got.last_count, got.used_counts, redeemed={got.digits})
    assert exc.value.reason == "used"


def test_a_token_older_than_the_window_is_too_old() -> None:
    count, old = encode(SECRET, 0, 100)
    for _ in range(9):  # nine newer tokens: 18 counts on, past the 16-count window
        count, newest = encode(SECRET, count, 100)
    state = redeem(SECRET, newest, 0, [])
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, old, state.last_count, state.used_counts)
    assert exc.value.reason == "too_old"


@pytest.mark.parametrize("code", ["123456789012", "12345", "abcdefghijkl", ""])
def test_wrong_codes_are_invalid(code: str) -> None:
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, code, 0, [])
    assert exc.value.reason == "invalid"


def test_another_meters_token_is_invalid() -> None:
    _, token = encode(MeterSecret.new(), 0, 100)
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, token, 0, [])
    assert exc.value.reason == "invalid"


def test_a_cancelled_token_is_refused() -> None:
    count, token = encode(SECRET, 0, 100)
    with pytest.raises(TokenRejectedError) as exc:
        redeem(SECRET, token, 0, [], cancelled={count})
    assert exc.value.reason == "cancelled"


def test_amount_bounds() -> None:
    for bad in (0, -1, MAX_TOKEN_VALUE + 1):
        with pytest.raises(ValueError):
            encode(SECRET, 0, bad)


def test_lockout_grows() -> None:
    lock = Lockout(free=3, base_s=10, max_s=100)
    lock = lock.failed(0).failed(0)
    assert lock.locked(0) == 0
    lock = lock.failed(0)
    assert lock.locked(0) == 10
    lock = lock.failed(10)
    assert lock.locked(10) == 20
    for _ in range(10):
        lock = lock.failed(1000)
    assert lock.locked(1000) == 100
    assert lock.succeeded().locked(1000) == 0


def test_secret_is_not_in_its_repr() -> None:
    secret = MeterSecret.new()
    assert secret.key not in repr(secret)
    assert str(secret.starting_code) not in repr(secret)


@given(st.lists(st.integers(1, MAX_TOKEN_VALUE), min_size=1, max_size=6), st.randoms())
def test_any_order_credits_each_token_at_most_once(amounts: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    count, tokens = 0, []
    for amount in amounts:
        count, token = encode(SECRET, count, amount)
        tokens.append((token, amount))
    entries = [t for t in tokens for _ in range(2)]
    rnd.shuffle(entries)
    last, used, credited = 0, (), []  # type: ignore[var-annotated]
    for token, amount in entries:
        try:
            got = redeem(SECRET, token, last, used, redeemed=credited)
        except TokenRejectedError as exc:
            assert exc.reason == "used"
            continue
        assert got.amount == amount
        credited.append(token)
        last, used = got.last_count, got.used_counts
    assert sorted(credited) == sorted(t for t, _ in tokens)


def test_seal_round_trip_hides_the_secret() -> None:
    secret = MeterSecret.new()
    sealed = seal("ab" * 32, "m1", secret)
    assert secret.key not in sealed
    assert unseal("ab" * 32, "m1", sealed) == secret
    assert unseal("cd" * 32, "m1", sealed) != secret
