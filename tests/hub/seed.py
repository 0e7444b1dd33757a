"""A small settlement world in the database, for tests and benchmarks: providers, one
tariff, gateways with command keys, and meters each with its own topped-up customer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from hub import ledger
from hub.db import run_tx
from hub.models import Gateway, Meter, TariffVersion, Tier
from hub.models import Tariff as TariffRow
from protocol.signing import new_key
from protocol.tariff import Tariff

DEFAULT_TARIFF: dict[str, Any] = {
    "id": "std",
    "currency": "USD",
    "components": [
        {"provider": "gen", "per_kwh": "0.1234"},
        {"provider": "grid", "per_kwh": "0.0517", "per_day": "0.30"},
        {"provider": "retail", "per_kwh": "0.0211"},
        {"provider": "tax", "tax_rate": "0.16"},
    ],
}
TIERS = {"gen": Tier.GENERATION, "grid": Tier.DISTRIBUTION, "retail": Tier.RETAIL}
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class World:
    tariff: Tariff
    gateways: dict[str, str] = field(default_factory=dict)  # gateway id -> command key
    meters: dict[str, str] = field(default_factory=dict)  # meter id -> gateway id
    customers: dict[str, str] = field(default_factory=dict)  # meter id -> customer id


def add_provider(session: Session, provider_id: str, currency: str) -> None:
    tier = TIERS.get(provider_id, Tier.PLATFORM)
    ledger.create_provider(session, provider_id, provider_id, tier, currency)


GATEWAYS_PER_TX = 100  # a large world is seeded in several transactions (see seed_world)


def seed_world(
    engine: Engine,
    *,
    gateways: int = 1,
    meters_per_gateway: int = 2,
    tariff: dict[str, Any] | None = None,
    topup: int = 10**9,
    prefix: str = "",
    extra_providers: tuple[str, ...] = (),
) -> World:
    """Create the world; ids are ``{prefix}gw-N`` and ``{prefix}gw-N-mM``. The providers and
    the tariff are one transaction, then every ``GATEWAYS_PER_TX`` gateways with their meters
    one more: each top-up updates the clearing account's row, and on PostgreSQL a transaction
    that updates one row 100,000 times slows as the row's versions pile up (a 100,000-meter
    fleet for ``bench.fleet`` did not seed in 15 minutes)."""
    doc = Tariff.model_validate(tariff or DEFAULT_TARIFF)
    world = World(tariff=doc)

    def setup(session: Session) -> None:
        for provider in (*doc.providers, *extra_providers):
            add_provider(session, provider, doc.currency)
        session.add(TariffRow(id=doc.id, currency=doc.currency, name=doc.id))
        session.flush()
        session.add(TariffVersion(tariff_id=doc.id, version=doc.version, valid_from=EPOCH,
                                  document=doc.model_dump_json()))  # fmt: skip

    def add_gateways(session: Session, first: int, last: int) -> None:
        for g in range(first, last):
            gw = f"{prefix}gw-{g}"
            key = new_key()
            session.add(Gateway(id=gw, command_key=key, mqtt_username=gw,
                                mqtt_password_hash="-"))  # fmt: skip
            world.gateways[gw] = key
            session.flush()
            for m in range(meters_per_gateway):
                meter = f"{gw}-m{m}"
                customer = f"{prefix}c-{g}-{m}"
                ledger.create_customer(session, customer, customer, doc.currency)
                if topup:
                    ledger.post_topup(session, customer, topup, idempotency_key="seed")
                session.add(Meter(id=meter, gateway_id=gw, customer_id=customer,
                                  tariff_id=doc.id))  # fmt: skip
                world.meters[meter] = gw
                world.customers[meter] = customer
        session.flush()

    run_tx(engine, setup)
    for first in range(0, gateways, GATEWAYS_PER_TX):
        run_tx(engine, partial(add_gateways, first=first,
                               last=min(gateways, first + GATEWAYS_PER_TX)))  # fmt: skip
    return world
