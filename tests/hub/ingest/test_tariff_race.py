"""A tariff version added while a batch is being rated (after its read transaction, before its
write transaction) and in force at the end of the batch's record: the batch is rated again with
it, so the debit is the tariff in force at the record's end (invariant 5). Found by the soak
(tests/soak), where operators change tariffs while meters report."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from hub.db import read_tx, run_tx
from hub.ingest.batch import BatchProcessor, RatedUsage
from hub.ingest.model import Inbound
from hub.models import JournalEntry, TariffVersion, table
from protocol.tariff import Tariff
from protocol.topics import topic
from tests.hub.ingest.helpers import records_for, usage
from tests.hub.seed import DEFAULT_TARIFF, seed_world


class AddsAVersionWhileRating(BatchProcessor):
    """A batch processor between whose read and write transactions an operator adds a tariff
    version (in its own transaction, on its own connection)."""

    def __init__(self, engine: Engine, version: TariffVersion) -> None:
        super().__init__(engine, hold_s=0)
        self.version: TariffVersion | None = version

    def _usage(self, conn: Any, work: Any, out: Any) -> RatedUsage | None:
        rated = super()._usage(conn, work, out)
        if self.version is not None:
            version, self.version = self.version, None
            run_tx(self.engine, lambda s: _add(s, version))
        return rated


def _add(session: Session, version: TariffVersion) -> None:
    session.add(version)


def test_a_version_added_while_rating_rates_the_batch_again(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=1)
    (meter,) = world.meters
    (record,) = records_for(meter, 1)
    components = list(DEFAULT_TARIFF["components"])
    components[0] = {**components[0], "per_kwh": "0.2468"}
    doubled = {**DEFAULT_TARIFF, "version": 2, "components": components}
    version = TariffVersion(tariff_id=world.tariff.id, version=2,
                            valid_from=datetime.fromisoformat(record["start"]),
                            document=Tariff.model_validate(doubled).model_dump_json())  # fmt: skip
    now = datetime.fromisoformat(record["end"])
    message = Inbound(topic("gw-0", "usage"), usage([record]), now)
    AddsAVersionWhileRating(engine, version).process([message], now)
    entries = table(JournalEntry)
    with read_tx(engine) as conn:
        (meta,) = conn.execute(select(entries.c.metadata).where(entries.c.meter_id == meter)).one()
    data = meta if isinstance(meta, dict) else json.loads(meta)
    assert data["version"] == 2
