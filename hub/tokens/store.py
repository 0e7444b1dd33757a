"""Offline top-up tokens in the hub's database and ledger. Never commits: the caller owns the
transaction (``hub.services.tokens`` for the API, ``hub.ingest.events`` for a gateway's report).

Money (every line in minor units, ``tokens:<CUR>`` a clearing account without a floor):

| step | lines | journal key |
|---|---|---|
| vend | customer −x, ``tokens:<CUR>`` +x | ``token:<account>:<Idempotency-Key>`` |
| settle (the gateway reported it) | ``tokens:<CUR>`` −x, customer +x | ``token-release:<id>`` |
| cancel (an operator; never redeemed) | ``tokens:<CUR>`` −x, customer +x | ``token-release:<id>`` |

Settling and cancelling share the journal key, so whatever the order of reports and requests a
token leaves the clearing account at most once, and the clearing account holds exactly the
tokens still ``vended``. A token the gateway redeemed after it was cancelled (it had not yet
heard) moves nothing more: the refund already gave the customer its money, and the token is
listed as settled so the gateway stops adding it (see ``setup``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from hub.errors import ConflictError, IdempotencyConflictError, InvalidInputError, NotFoundError
from hub.ledger.accounts import ensure_account
from hub.ledger.bulk import any_of
from hub.ledger.posting import post
from hub.ledger.sql import accounts
from hub.models import AccountKind, EntryKind, Meter, MeterTokenKey, TopupToken, table, utcnow
from protocol.messages import MAX_TOKEN_LIST, TokenSetup
from protocol.tokens import MeterSecret, encode, seal

log = logging.getLogger(__name__)

T_KEYS = table(MeterTokenKey)
T_TOKENS = table(TopupToken)
T_METERS = table(Meter)

TOKEN_EVENT = "token_redeemed"  # the agent's event: data {"count", "amount"}


def tokens_account_id(currency: str) -> str:
    """Where vended, not yet redeemed tokens' money waits."""
    return f"tokens:{currency}"


def vend_key(account_id: str, idempotency_key: str) -> str:
    return f"token:{account_id}:{idempotency_key}"


@dataclass(frozen=True)
class Vended:
    id: str
    meter_id: str
    account_id: str
    amount: int
    currency: str
    digits: str
    count: int
    created: bool  # False: the same request again, nothing moved


def _row(r: Any, created: bool) -> Vended:
    m = r._mapping  # a Row's ``count`` attribute is tuple.count
    return Vended(m["id"], m["meter_id"], m["account_id"], int(m["amount"]), m["currency"],
                  m["digits"], int(m["count"]), created)  # fmt: skip


def meter_secret(conn: Connection, meter_id: str) -> MeterSecret:
    """The meter's secret, made on first use (locked for the caller's transaction)."""
    row = conn.execute(
        select(T_KEYS).where(T_KEYS.c.meter_id == meter_id).with_for_update()
    ).first()
    if row is None:
        secret = MeterSecret.new()
        conn.execute(insert(T_KEYS).values(meter_id=meter_id, secret_key=secret.key,
                                           starting_code=secret.starting_code, last_count=0,
                                           created_at=utcnow()))  # fmt: skip
        return secret
    return MeterSecret(row.secret_key, int(row.starting_code))


def vend(
    conn: Connection, account_id: str, meter_id: str, amount: int, idempotency_key: str
) -> Vended:
    """Debit ``amount`` from ``account_id`` into ``tokens:<CUR>`` and make the meter's next
    token, at most once per key (the same key with another request: 409)."""
    key = vend_key(account_id, idempotency_key)
    request = {"account": account_id, "meter": meter_id, "amount": amount}
    found = conn.execute(select(T_TOKENS).where(T_TOKENS.c.idempotency_key == key)).first()
    if found is not None:
        if found.request != request:
            raise IdempotencyConflictError(key, int(found.vend_entry_id))
        return _row(found, created=False)
    meter = conn.execute(select(T_METERS).where(T_METERS.c.id == meter_id)).first()
    if meter is None:
        raise NotFoundError("meter", meter_id)
    if meter.customer_id != account_id:
        raise InvalidInputError("meter", f"meter {meter_id!r} is not paid by {account_id!r}")
    currency = conn.execute(
        select(accounts.c.currency).where(accounts.c.id == account_id)
    ).scalar_one()
    clearing = tokens_account_id(currency)
    ensure_account(conn, clearing, name=f"Tokens {currency}", kind=AccountKind.CLEARING,
                   currency=currency)  # fmt: skip
    secret = meter_secret(conn, meter_id)
    last = conn.execute(
        select(T_KEYS.c.last_count).where(T_KEYS.c.meter_id == meter_id)
    ).scalar_one()
    try:
        count, digits = encode(secret, int(last), amount)
    except ValueError as exc:
        raise InvalidInputError("amount", str(exc)) from exc
    token_id = uuid.uuid4().hex
    posted = post(conn, EntryKind.TOKEN, [(account_id, -amount), (clearing, amount)], currency,
                  meter_id=meter_id, idempotency_key=key, memo=f"token {token_id}",
                  metadata={"token": token_id, "step": "vend"})  # fmt: skip
    if not posted.created:  # lost a race for the key: the winner is committed
        raise ConflictError(f"token request {idempotency_key!r} is being vended; try again")
    conn.execute(update(T_KEYS).where(T_KEYS.c.meter_id == meter_id).values(last_count=count))
    conn.execute(insert(T_TOKENS).values(
        id=token_id, meter_id=meter_id, account_id=account_id, count=count, amount=amount,
        currency=currency, digits=digits, status="vended", redeemed=False,
        idempotency_key=key, request=request, vend_entry_id=posted.entry_id,
        created_at=utcnow(),
    ))  # fmt: skip
    return Vended(token_id, meter_id, account_id, amount, currency, digits, count, True)


def _release(conn: Connection, token: Any, status: str, *, redeemed: bool) -> None:
    clearing = tokens_account_id(token.currency)
    posted = post(conn, EntryKind.TOKEN, [(clearing, -int(token.amount)),
                                          (token.account_id, int(token.amount))],
                  token.currency, meter_id=token.meter_id, enforce_floor=False,
                  idempotency_key=f"token-release:{token.id}", memo=f"token {token.id} {status}",
                  metadata={"token": token.id, "step": status})  # fmt: skip
    conn.execute(update(T_TOKENS).where(T_TOKENS.c.id == token.id).values(
        status=status, redeemed=redeemed or bool(token.redeemed),
        release_entry_id=posted.entry_id, released_at=utcnow()))  # fmt: skip


def _locked(conn: Connection, **where: Any) -> Any:
    stmt = select(T_TOKENS).with_for_update()
    for column, value in where.items():
        stmt = stmt.where(T_TOKENS.c[column] == value)
    return conn.execute(stmt).first()


def cancel(conn: Connection, token_id: str) -> Any:
    """Refund a token never redeemed (again: the same answer); ConflictError once settled."""
    token = _locked(conn, id=token_id)
    if token is None:
        raise NotFoundError("token", token_id)
    if token.status == "settled":
        raise ConflictError(f"token {token_id} was redeemed and settled; it cannot be cancelled")
    if token.status == "vended":
        _release(conn, token, "cancelled", redeemed=False)
    return _locked(conn, id=token_id)


def settle_reported(conn: Connection, meter_id: str, count: int, amount: int) -> str:
    """A gateway reported redeeming the meter's token ``count``: settle it once. Returns what
    happened (``settled``, ``again``, ``after_cancel``, ``unknown``, ``mismatch``)."""
    token = _locked(conn, meter_id=meter_id, count=count)
    if token is None:
        log.warning("meter %s redeemed token count %d, which the hub never vended", meter_id, count)
        return "unknown"
    if int(token.amount) != amount:
        log.warning("meter %s redeemed token %s for %d, vended for %d: not settled",
                    meter_id, token.id, amount, token.amount)  # fmt: skip
        return "mismatch"
    if token.status == "vended":
        _release(conn, token, "settled", redeemed=True)
        return "settled"
    if token.status == "cancelled" and not token.redeemed:
        conn.execute(update(T_TOKENS).where(T_TOKENS.c.id == token.id).values(redeemed=True))
        return "after_cancel"
    return "again"


def setup(conn: Connection, meter_id: str, command_key: str) -> TokenSetup | None:
    """What the meter's credit state says about its tokens (None before its first token)."""
    return setups(conn, {meter_id: command_key}).get(meter_id)


def setups(conn: Connection, command_keys: Mapping[str, str]) -> dict[str, TokenSetup]:
    """Per meter (id -> its gateway's command key) with tokens, what its credit state says
    about them, in two queries whatever the number of meters. ``settled``: tokens whose money
    the balance holds (settled, or refunded and redeemed anyway); ``cancelled``: refunded and
    not redeemed, which the gateway must refuse (their money is in the balance too)."""
    ids = sorted(m for m, key in command_keys.items() if key)
    if not ids:
        return {}
    keys = conn.execute(select(T_KEYS).where(any_of(conn, T_KEYS.c.meter_id, ids))).all()
    if not keys:
        return {}
    settled: dict[str, list[int]] = {}
    cancelled: dict[str, list[int]] = {}
    rows = conn.execute(
        select(T_TOKENS.c.meter_id, T_TOKENS.c["count"], T_TOKENS.c.status, T_TOKENS.c.redeemed)
        .where(
            any_of(conn, T_TOKENS.c.meter_id, [k.meter_id for k in keys]),
            T_TOKENS.c.status != "vended",
        )
        .order_by(T_TOKENS.c["count"].desc())
    )
    for meter_id, count, status, redeemed in rows:
        into = settled if status == "settled" or redeemed else cancelled
        into.setdefault(meter_id, []).append(int(count))
    out: dict[str, TokenSetup] = {}
    for key in keys:
        secret = MeterSecret(key.secret_key, int(key.starting_code))
        out[key.meter_id] = TokenSetup(
            sealed=seal(command_keys[key.meter_id], key.meter_id, secret),
            settled=tuple(sorted(settled.get(key.meter_id, [])[:MAX_TOKEN_LIST])),
            cancelled=tuple(sorted(cancelled.get(key.meter_id, [])[:MAX_TOKEN_LIST])),
        )
    return out
