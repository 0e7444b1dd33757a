"""New bills are announced on the existing webhook channel: the bill_issued events a run wrote
reach a real HTTP receiver, signed; without SMSA_HUB_SMTP_URL no email is attempted."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine

from hub.billing.announce import announce
from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.control.webhook import WebhookNotifier
from hub.db import run_tx
from tests.hub.control.test_webhook import Receiver, receiver, webhook  # noqa: F401 (fixtures)
from tests.hub.seed import seed_world
from tests.support import wait_for


def test_bills_are_announced_on_the_webhook(
    sqlite_engine: Engine,
    receiver: Receiver,  # noqa: F811
    webhook: Callable[..., WebhookNotifier],  # noqa: F811
) -> None:
    seed_world(sqlite_engine, meters_per_gateway=2, topup=0)
    settings = BillingSettings(timezone="UTC", smtp_url="")
    after = datetime(2027, 2, 1, 1, tzinfo=UTC)
    result = run_tx(
        sqlite_engine, lambda s: run_billing(s.connection(), Period(2027, 1), settings, after)
    )
    assert len(result.events) == 2
    sent = announce(sqlite_engine, result.events, webhook().notify, settings)
    assert sent == 0  # email is off without SMSA_HUB_SMTP_URL
    wait_for(lambda: len(receiver.accepted()) == 2, timeout=10)
    got = receiver.accepted()
    assert {e["kind"] for e in got} == {"bill_issued"}
    assert sorted(e["data"]["number"] for e in got) == ["SMSA-2027-000001", "SMSA-2027-000002"]
