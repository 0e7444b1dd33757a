"""A payment held for a verifier's confirmation is checked as a top-up is, before it is held:
an unknown account, an account that takes no payment, or one in another currency is refused
and nothing is recorded pending (``hub.services.held``, ``hub.services.topups``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from hub.control.engine import CreditControl
from hub.db import read_tx, write_tx
from hub.errors import InvalidInputError, NotFoundError
from hub.ledger import open_account
from hub.metrics import Metrics
from hub.models import AccountKind, table
from hub.models.payments import PaymentRecord
from hub.payments.receive import Source
from hub.services.held import held
from hub.services.runtime import Runtime
from hub.settings import HubSettings


def test_a_held_payment_is_checked_as_a_top_up(
    api_settings: HubSettings, api_engine: Engine
) -> None:
    rt = Runtime(api_settings, api_engine, Metrics(), CreditControl(api_engine))
    with write_tx(api_engine) as conn:
        open_account(conn, "eu-sponsor", name="Euro", kind=AccountKind.SPONSOR, currency="EUR",
                     floor=None)  # fmt: skip
    source = Source(channel="callback", key="cb:held-1")
    with pytest.raises(InvalidInputError, match="EUR"):
        held(rt, "eu-sponsor", 500, source)
    with pytest.raises(NotFoundError):
        held(rt, "nobody", 500, source)
    with read_tx(api_engine) as conn:
        assert (
            conn.execute(select(func.count()).select_from(table(PaymentRecord))).scalar_one() == 0
        )
