"""API keys: created at random, stored as a SHA-256 hash, verified, revoked, last use recorded.

A key is ``smsa_`` + 43 URL-safe characters (256 random bits), so a plain SHA-256 is a safe
store: there is nothing to brute-force. The functions take the caller's session and never
commit; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from hub.errors import InvalidInputError, NotFoundError
from hub.ledger.accounts import ensure_account
from hub.models import ID_PATTERN, Account, AccountKind, ApiKey, Role, utcnow

KEY_PREFIX = "smsa_"
# last_used_at is written at most this often per key, to keep reads from becoming writes.
LAST_USE_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and role, and for a customer the one account it may use."""

    key_id: int
    role: Role
    account_id: str | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    session: Session, role: Role | str, account_id: str | None = None, *, currency: str = ""
) -> tuple[int, str]:
    """A new key for ``role``; returns ``(key id, key)``; the key itself is stored nowhere.
    A ``billpay`` key is bound to its network's account ``billpay:<network>``, opened here
    (in ``currency``) if new: the network's payments come in through it."""
    try:
        role = Role(role)
    except ValueError as exc:
        raise InvalidInputError("role", f"expected one of {', '.join(Role)}") from exc
    if role is Role.CUSTOMER and not account_id:
        raise InvalidInputError("account", "a customer key needs --account")
    if role is Role.PROVIDER and not (account_id or "").startswith("provider:"):
        raise InvalidInputError("account", "a provider key needs --provider")
    if role is Role.BILLPAY:
        network = (account_id or "").removeprefix("billpay:")
        if not (account_id or "").startswith("billpay:") or not re.match(ID_PATTERN, network):
            raise InvalidInputError("network", "a billpay key needs --network ID")
        if session.get(Account, account_id) is None:
            if not currency:
                raise InvalidInputError("currency", "a new network's account needs a currency")
            ensure_account(session, account_id or "", name=f"Bill-payment network {network}",
                           kind=AccountKind.CLEARING, currency=currency)  # fmt: skip
    elif role not in (Role.CUSTOMER, Role.PROVIDER) and account_id:
        raise InvalidInputError("account", "only a customer or provider key is bound to an account")
    if account_id and session.get(Account, account_id) is None:
        raise NotFoundError("account", account_id)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(key_hash=hash_key(key), role=role, account_id=account_id)
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id, key


def find_key(session: Session, key: str) -> ApiKey | None:
    """The live (not revoked) key row for ``key``, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


def principal_of(row: ApiKey) -> Principal:
    assert row.id is not None
    return Principal(key_id=row.id, role=Role(row.role), account_id=row.account_id)


def needs_touch(row: ApiKey, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return row.last_used_at is None or now - row.last_used_at >= LAST_USE_RESOLUTION


def touch(session: Session, key_id: int, now: datetime | None = None) -> None:
    """Record that the key was used now."""
    row = session.get(ApiKey, key_id)
    if row is not None:
        row.last_used_at = now or utcnow()
        session.add(row)


def is_live(session: Session, key_id: int) -> bool:
    row = session.get(ApiKey, key_id)
    return row is not None and row.revoked_at is None


def find_by_id_or_key(session: Session, key_or_id: str) -> ApiKey:
    """The key row (revoked or not) given by its numeric id or the key itself."""
    row: ApiKey | None
    if key_or_id.isdigit():
        row = session.get(ApiKey, int(key_or_id))
    else:
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key_or_id))).first()
    if row is None:
        raise NotFoundError("key", key_or_id if key_or_id.isdigit() else "(given key)")
    return row


def revoke_key(session: Session, key_or_id: str) -> int:
    """Revoke a key given by its numeric id or the key itself; returns the id."""
    row = find_by_id_or_key(session, key_or_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
    assert row.id is not None
    return row.id
