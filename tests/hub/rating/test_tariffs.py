"""The tariff version in force at a moment, read from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from hub.db import read_tx, write_tx
from hub.models import metadata
from hub.rating.tariffs import load_histories
from tests.hub.seed import seed_world


def test_the_version_in_force_follows_valid_from(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=1)
    v2 = world.tariff.model_copy(update={"version": 2, "currency": "USD"})
    switch = datetime(2026, 3, 15, tzinfo=UTC)
    with write_tx(engine) as conn:
        conn.execute(insert(metadata.tables["tariff_versions"]).values(
            tariff_id=world.tariff.id, version=2, valid_from=switch,
            document=v2.model_dump_json(), created_at=switch,
        ))  # fmt: skip
    with read_tx(engine) as conn:
        history = load_histories(conn, [world.tariff.id, "missing"])[world.tariff.id]
        assert "missing" not in load_histories(conn, ["missing"])
    assert history.at(datetime(2026, 3, 1, tzinfo=UTC)).version == 1
    assert history.at(switch).version == 2
    assert history.at(datetime(2027, 1, 1, tzinfo=UTC)).version == 2
    assert history.at(datetime(1990, 1, 1, tzinfo=UTC)).version == 1, "before any: the first"
