"""Opening accounts and the parties that own them; well-known system account ids."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from hub.errors import ConflictError, UnknownAccountError
from hub.ledger.sql import Executor, accounts, conn_of, customers, insert_ignore, providers
from hub.models import AccountKind, Tier, utcnow


def provider_account_id(provider_id: str) -> str:
    return f"provider:{provider_id}"


def clearing_account_id(currency: str) -> str:
    """Where top-up money comes from (cash received); its balance goes negative by design."""
    return f"clearing:{currency}"


def platform_account_id(currency: str) -> str:
    return f"platform:{currency}"


def open_account(
    db: Executor,
    account_id: str,
    *,
    name: str,
    kind: AccountKind,
    currency: str,
    floor: int | None = 0,
    owner_id: str | None = None,
) -> None:
    """Open an account with balance 0; ``floor`` None means no floor. ConflictError if it exists."""
    conn = conn_of(db)
    if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first():
        raise ConflictError(f"account {account_id!r} already exists")
    values = {"id": account_id, "name": name, "kind": kind.value, "currency": currency,
              "balance": 0, "floor": floor, "owner_id": owner_id,
              "created_at": utcnow()}  # fmt: skip
    try:
        with conn.begin_nested():
            conn.execute(insert(accounts).values(values))
    except IntegrityError as exc:
        raise ConflictError(f"account {account_id!r} already exists") from exc


def ensure_account(
    db: Executor, account_id: str, *, name: str, kind: AccountKind, currency: str,
    floor: int | None = None,
) -> None:  # fmt: skip
    """Open the account unless it exists (system accounts: clearing, platform)."""
    stmt = insert_ignore(conn_of(db), accounts, ["id"]).values(
        id=account_id, name=name, kind=kind.value, currency=currency, balance=0, floor=floor,
        owner_id=None, created_at=utcnow(),
    )  # fmt: skip
    conn_of(db).execute(stmt)


def create_provider(db: Executor, provider_id: str, name: str, tier: Tier, currency: str) -> str:
    """A provider and its settlement account (no floor); returns the account id."""
    account_id = provider_account_id(provider_id)
    conn = conn_of(db)
    if conn.execute(select(providers.c.id).where(providers.c.id == provider_id)).first():
        raise ConflictError(f"provider {provider_id!r} already exists")
    open_account(conn, account_id, name=name, kind=AccountKind.PROVIDER, currency=currency,
                 floor=None, owner_id=provider_id)  # fmt: skip
    conn.execute(insert(providers).values(id=provider_id, name=name, tier=Tier(tier).value,
                                          account_id=account_id, created_at=utcnow()))  # fmt: skip
    return account_id


def create_customer(
    db: Executor, customer_id: str, name: str, currency: str, *, protected: bool = False,
    alternate_account_id: str | None = None, floor: int = 0,
) -> str:  # fmt: skip
    """A customer and its prepaid account, whose id is the customer id; returns that id."""
    conn = conn_of(db)
    if conn.execute(select(customers.c.id).where(customers.c.id == customer_id)).first():
        raise ConflictError(f"customer {customer_id!r} already exists")
    if (
        alternate_account_id is not None
        and not conn.execute(
            select(accounts.c.id).where(accounts.c.id == alternate_account_id)
        ).first()
    ):
        raise UnknownAccountError(alternate_account_id)
    open_account(conn, customer_id, name=name, kind=AccountKind.CUSTOMER, currency=currency,
                 floor=floor, owner_id=customer_id)  # fmt: skip
    conn.execute(insert(customers).values(
        id=customer_id, name=name, protected=protected,
        alternate_account_id=alternate_account_id, flags={}, created_at=utcnow(),
    ))  # fmt: skip
    return customer_id


def set_floor(db: Executor, account_id: str, floor: int | None) -> None:
    """Move an account's floor (credit control: emergency or friendly credit lowers it)."""
    result = conn_of(db).execute(
        update(accounts).where(accounts.c.id == account_id).values(floor=floor)
    )
    if result.rowcount == 0:
        raise UnknownAccountError(account_id)
