"""Top-ups as the API performs them: validate, post once (ledger), then tell the meters.

Debt recovery is posted in the top-up's own transaction, so a crash cannot separate them.
After the commit, credit control runs for the account (``hub.notify``): reconnect above the
threshold, the meters' new credit state. It is best-effort: a failure never undoes or repeats
the posting; a replayed top-up triggers nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from hub.api.context import HubContext
from hub.api.money import parse_amount
from hub.control.effects import Plan
from hub.db import run_tx
from hub.errors import InvalidInputError, NotFoundError
from hub.ledger.topups import ProviderTxn, TopupResult, post_topup
from hub.models import Account, AccountKind
from hub.notify import after_topup

log = logging.getLogger(__name__)

TOPUP_KINDS = frozenset({AccountKind.CUSTOMER, AccountKind.ALTERNATE, AccountKind.SPONSOR})


def topup(
    ctx: HubContext,
    account_id: str,
    amount: str,
    *,
    reference: str,
    idempotency_key: str | None = None,
    payment: ProviderTxn | None = None,
    currency: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> TopupResult:
    """Validate and post a top-up of ``amount`` (decimal string) at most once per API
    ``idempotency_key`` (scoped to the account) or per provider ``payment`` (whatever the
    account); see ``hub.ledger.topups.post_topup``."""
    if currency is not None and currency != ctx.currency:
        raise InvalidInputError("currency", f"this hub takes {ctx.currency}, not {currency}")
    minor = parse_amount("amount", amount, ctx.currency, maximum=ctx.settings.max_topup_minor)

    def work(session: Session) -> tuple[TopupResult, Plan | None]:
        account = session.get(Account, account_id)
        if account is None:
            raise NotFoundError("account", account_id)
        if AccountKind(account.kind) not in TOPUP_KINDS:
            raise InvalidInputError("path.account_id", f"a {account.kind} account takes no top-up")
        if account.currency != ctx.currency:
            raise InvalidInputError("currency", f"account is in {account.currency}")
        result = post_topup(
            session,
            account_id,
            minor,
            idempotency_key=idempotency_key,
            payment=payment,
            reference=reference,
            metadata=metadata,
        )
        if not result.created or ctx.control is None:
            return result, None
        return result, ctx.control.recover(session, account_id, result.entry_id)

    result, recovered = run_tx(ctx.engine, work)
    if result.created:
        ctx.metrics.inc("topups")
        ctx.metrics.inc("postings")
        after_topup(ctx, account_id, result.entry_id, recovered)
    else:
        ctx.metrics.inc("topup_replays")
    return result
