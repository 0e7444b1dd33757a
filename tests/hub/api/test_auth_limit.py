"""Failed authentications are limited per client address (issue 14, item 8: 1,000 wrong API keys
were tried at 244/s). After ``AUTH_FAILURE_BURST`` failures, a wrong key is answered 429 with
Retry-After until the bucket refills; a correct key is never slowed."""

from __future__ import annotations

import time

import httpx
import pytest

from hub.api.ratelimit import FailureLimiter
from hub.services.payments import signature
from hub.settings import HubSettings
from tests.hub.api.conftest import PAYMENT_SECRET, Keys

BURST = 10  # the default
REFILL_S = 2.0  # (default 6 s) one more failure allowed every REFILL_S


@pytest.fixture
def api_settings(api_settings: HubSettings) -> HubSettings:
    return api_settings.model_copy(
        update={"auth_failure_burst": BURST, "auth_failure_refill_s": REFILL_S}
    )


def wrong(i: int) -> dict[str, str]:
    return {"Authorization": f"Bearer smsa_guess-{i:04d}"}


def test_guessing_keys_is_cut_to_the_refill_rate(client: httpx.Client, keys: Keys) -> None:
    start = time.monotonic()
    answers = [client.get("/api/v1/meters", headers=wrong(i)) for i in range(200)]
    elapsed = time.monotonic() - start
    refused = [r for r in answers if r.status_code == 401]
    limited = [r for r in answers if r.status_code == 429]
    assert len(refused) + len(limited) == 200
    assert answers[:BURST] == refused[:BURST]
    assert len(refused) <= BURST + elapsed / REFILL_S + 1, (len(refused), elapsed)
    r = limited[0]
    assert r.json()["error"] == "TooManyFailuresError"
    assert len(r.json()["detail"].splitlines()) == 1
    assert 1 <= int(r.headers["retry-after"]) <= REFILL_S
    # Meanwhile the right key, from the same address, is served at once.
    start = time.monotonic()
    assert client.get("/api/v1/meters", headers=keys.h("operator")).status_code == 200
    assert time.monotonic() - start < 1.0
    assert client.get("/api/v1/meters", headers=wrong(999)).status_code == 429


def test_retry_after_is_honest(client: httpx.Client, keys: Keys) -> None:
    for i in range(BURST):
        assert client.get("/api/v1/meters", headers=wrong(i)).status_code == 401
    r = client.get("/api/v1/meters", headers=wrong(BURST))
    assert r.status_code == 429
    time.sleep(int(r.headers["retry-after"]))
    assert client.get("/api/v1/meters", headers=wrong(BURST + 1)).status_code == 401
    assert client.get("/api/v1/meters", headers=wrong(BURST + 2)).status_code == 429


def test_no_key_is_not_a_guess(client: httpx.Client, keys: Keys) -> None:
    for _ in range(3 * BURST):
        assert client.get("/api/v1/meters").status_code == 401
    assert client.get("/api/v1/meters", headers=wrong(0)).status_code == 401


def test_stream_tokens_and_payment_signatures_count_too(client: httpx.Client, keys: Keys) -> None:
    for i in range(BURST // 2):
        r = client.get(f"/api/v1/events/stream?token={i}.{2**31}.forged")
        assert r.status_code == 401
    raw = b'{"transaction_id": "T1", "account": "c1", "amount": "1.00"}'
    stamp = str(int(time.time()))
    forged = {"X-Timestamp": stamp, "X-Signature": "sha256=" + signature("guess", stamp, raw)}
    for _ in range(BURST - BURST // 2):
        assert client.post("/api/v1/payments/callback/mpesa", content=raw,
                           headers=forged).status_code == 401  # fmt: skip
    assert client.get("/api/v1/events/stream?token=1.2.x").status_code == 429
    assert client.post("/api/v1/payments/callback/mpesa", content=raw,
                       headers=forged).status_code == 429  # fmt: skip
    # The provider's real callback still goes through.
    good = {"X-Timestamp": stamp, "X-Signature": "sha256=" + signature(PAYMENT_SECRET, stamp, raw)}
    assert client.post("/api/v1/payments/callback/mpesa", content=raw,
                       headers=good).status_code == 201  # fmt: skip


def test_buckets_refill_and_stay_bounded() -> None:
    now = [0.0]
    limiter = FailureLimiter(2, 5.0, max_tracked=3, clock=lambda: now[0])
    assert [limiter.fail("a") for _ in range(3)] == [0.0, 0.0, 5.0]
    now[0] = 2.5
    assert limiter.fail("a") == 2.5  # half a failure back: 2.5 s to go
    now[0] = 5.0
    assert limiter.fail("a") == 0.0
    for i in range(10):  # many addresses: at most max_tracked buckets are kept
        limiter.fail(f"10.0.0.{i}")
    assert len(limiter._buckets) <= 3
