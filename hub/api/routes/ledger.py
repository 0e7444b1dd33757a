"""GET /ledger/check (operator): every ledger invariant, computed now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hub.api.deps import Operator, SessionDep
from hub.api.jsonbody import HubRoute
from hub.api.schemas import LedgerCheckOut
from hub.ledger import check_invariants

router = APIRouter(prefix="/ledger", tags=["ledger"], route_class=HubRoute)


@router.get("/check", response_model=LedgerCheckOut)
def check(session: SessionDep, _: Operator) -> dict[str, Any]:
    return check_invariants(session)
