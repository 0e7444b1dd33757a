"""What a credit-control transaction decided (a :class:`Plan`), and the events it records."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from hub.audit import CREDIT_CONTROL
from hub.control.state import AccountCtx
from hub.events import event_json, record_event
from hub.ledger import set_floor

log = logging.getLogger(__name__)

BY = "credit_control"  # ``data.by`` of every event credit control records
NOTIFY_KINDS = frozenset({"low_credit", "operator_alert", "disconnect", "reconnect",
                          "alternate_draw", "emergency_credit"})  # fmt: skip


@dataclass(frozen=True)
class Action:
    """Something credit control did: an event kind, the meter, and the command it sent."""

    kind: str
    meter_id: str | None
    reason: str
    rule: str = ""
    command_id: str | None = None
    event_id: int | None = None


@dataclass
class Plan:
    """What one transaction decided; carried out after it commits."""

    actions: list[Action] = field(default_factory=list)
    commands: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (gateway, cmd)
    credit_meters: set[str] = field(default_factory=set)
    notices: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        session: Session,
        kind: str,
        meter_id: str | None,
        reason: str,
        data: dict[str, Any],
        *,
        rule: str = "",
        command_id: str | None = None,
        notify: bool = True,
        actor: str = CREDIT_CONTROL,
    ) -> int:
        """Store an event (the database outbox, audited as caused by ``actor``: the credit
        rules unless an operator's key), log it, and queue its notification."""
        event = record_event(session, kind, meter_id=meter_id, reason=reason, data=data,
                             actor=actor)  # fmt: skip
        self.actions.append(Action(kind, meter_id, reason, rule, command_id, event.id))
        log.info("credit control: %s %s: %s", kind, meter_id, reason)
        if notify and kind in NOTIFY_KINDS:
            self.notices.append(event_json(event))
        return int(event.id or 0)


def restore_floor(session: Session, ctx: AccountCtx, plan: Plan, why: str) -> None:
    """Emergency credit repaid: the floor goes back to zero (an ``emergency_repaid`` event)."""
    set_floor(session.connection(), ctx.id, 0)
    old, ctx.floor = ctx.floor, 0
    meter_id = ctx.meters[0].id if ctx.meters else None
    data = {"by": BY, "account": ctx.id, "balance": ctx.balance, "floor_before": old}
    reason = f"emergency credit repaid ({why}); floor {old} -> 0"
    plan.record(session, "emergency_repaid", meter_id, reason, data, rule="emergency")
