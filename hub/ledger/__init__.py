"""The double-entry ledger: posting (single, batched usage, top-ups, reversals), queries and
invariant checks. Every function takes a Session or Connection inside a transaction the caller
owns and never commits. Amounts are signed integers in minor units: + credits, - debits."""

from hub.ledger.accounts import (
    clearing_account_id,
    create_customer,
    create_provider,
    ensure_account,
    open_account,
    platform_account_id,
    provider_account_id,
    set_floor,
)
from hub.ledger.invariants import check_invariants
from hub.ledger.lines import Line, check_lines
from hub.ledger.meters import get_carry, set_carry
from hub.ledger.posting import Posted, post, post_entry
from hub.ledger.queries import (
    AccountView,
    LinePage,
    LineView,
    ProviderBalance,
    ProviderStatement,
    account_lines,
    get_account,
    provider_balances,
    provider_statement,
)
from hub.ledger.reversals import post_reversal
from hub.ledger.topups import ProviderTxn, TopupResult, payment_key, post_topup, topup_key
from hub.ledger.usage import AccountState, BatchResult, UsagePosting, post_usage_batch

__all__ = [
    "AccountState",
    "AccountView",
    "BatchResult",
    "Line",
    "LinePage",
    "LineView",
    "Posted",
    "ProviderBalance",
    "ProviderStatement",
    "ProviderTxn",
    "TopupResult",
    "UsagePosting",
    "account_lines",
    "check_invariants",
    "check_lines",
    "clearing_account_id",
    "create_customer",
    "create_provider",
    "ensure_account",
    "get_account",
    "get_carry",
    "open_account",
    "payment_key",
    "platform_account_id",
    "post",
    "post_entry",
    "post_reversal",
    "post_topup",
    "post_usage_batch",
    "provider_account_id",
    "provider_balances",
    "provider_statement",
    "set_carry",
    "set_floor",
    "topup_key",
]
