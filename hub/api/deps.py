"""Request dependencies: the hub context, database sessions, and the caller's API key and role.

``Authorization: Bearer <key>``: missing or unknown or revoked key → 401; a role the route
does not allow → 403. A customer key is bound to one account (``ensure_account``).
The SSE stream also takes ``?token=`` (a short-lived token from ``POST /events/stream-token``),
because a browser's EventSource cannot send headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from hub.api.context import HubContext
from hub.audit import record_created
from hub.db import run_tx, session_scope
from hub.errors import ConflictError, DatabaseError, ForbiddenError, HubError
from hub.keys import Principal, find_key, is_live, needs_touch, principal_of, touch
from hub.models import ApiKey, Role

T = TypeVar("T")


class AuthError(HubError):
    """No key, an unknown key, or a revoked key."""

    http_status = 401


# Pure dependencies are ``async def`` so FastAPI does not hop to a worker thread for them.


async def get_context(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.hub
    return ctx


ContextDep = Annotated[HubContext, Depends(get_context)]


async def get_engine(ctx: ContextDep) -> Engine:
    return ctx.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def get_read_session(engine: EngineDep) -> Iterator[Session]:
    """A read-only session (no write lock on SQLite), for GET routes."""
    with session_scope(engine, write=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_read_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def authenticate(ctx: HubContext, key: str | None, address: str) -> Principal:
    """The key's principal; AuthError (401) for no key or a wrong one, and once ``address``
    has failed too often, TooManyFailuresError (429) for a wrong one (``hub.api.ratelimit``)."""
    if not key:
        raise AuthError("missing API key (Authorization: Bearer <key>)")
    with session_scope(ctx.engine, write=False) as session:
        row = find_key(session, key)
        if row is None:
            raise ctx.auth_limiter.check(address, AuthError("unknown or revoked API key"))
        principal = principal_of(row)
        stale = needs_touch(row)
    if stale:
        run_tx(ctx.engine, lambda s: touch(s, principal.key_id))
    return principal


def get_principal(request: Request, ctx: ContextDep) -> Principal:
    return authenticate(ctx, _bearer(request), client_address(request))


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency allowing only ``roles`` (admin is always allowed)."""
    allowed = {Role.ADMIN, *roles}

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in allowed:
            raise ForbiddenError(f"role {principal.role.value!r} may not do this")
        return principal

    return check


Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
AnyRole = Annotated[Principal, Depends(require(Role.OPERATOR, Role.CUSTOMER))]
CustomerOrAdmin = Annotated[Principal, Depends(require(Role.CUSTOMER))]
ProviderOrAdmin = Annotated[Principal, Depends(require(Role.PROVIDER))]


def ensure_account(principal: Principal, account_id: str) -> None:
    """A customer key may only touch the account it was created for."""
    if principal.role is Role.CUSTOMER and principal.account_id != account_id:
        raise ForbiddenError("this key may only use its own account")


# Stream tokens: "<key id>.<expiry unix>.<hmac>", signed with the process's secret.


def make_stream_token(ctx: HubContext, principal: Principal) -> tuple[str, int]:
    expires = int(time.time()) + ctx.settings.stream_token_ttl_s
    body = f"{principal.key_id}.{expires}"
    mac = hmac.new(ctx.token_secret, body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}", expires


def principal_from_token(ctx: HubContext, token: str) -> Principal:
    parts = token.split(".")
    if (
        len(parts) != 3
        or not parts[0].isdigit()
        or not parts[1].isdigit()
        or len(parts[0]) > 18
        or len(parts[1]) > 12
    ):
        raise AuthError("malformed stream token")
    body = f"{parts[0]}.{parts[1]}"
    mac = hmac.new(ctx.token_secret, body.encode(), hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).decode().rstrip("=")
    if not hmac.compare_digest(expected, parts[2]):
        raise AuthError("bad stream token")
    if int(parts[1]) < time.time():
        raise AuthError("stream token expired")
    key_id = int(parts[0])
    with session_scope(ctx.engine, write=False) as session:
        if not is_live(session, key_id):
            raise AuthError("the key behind this stream token was revoked")
        row = session.get(ApiKey, key_id)
        assert row is not None
        return principal_of(row)


def get_stream_principal(request: Request, ctx: ContextDep, token: str | None = None) -> Principal:
    """Bearer key, or ``?token=`` from POST /events/stream-token; operator or admin only."""
    key, address = _bearer(request), client_address(request)
    if key or not token:
        principal = authenticate(ctx, key, address)
    else:
        try:
            principal = principal_from_token(ctx, token)
        except AuthError as exc:
            raise ctx.auth_limiter.check(address, exc) from None
    if principal.role not in {Role.ADMIN, Role.OPERATOR}:
        raise ForbiddenError(f"role {principal.role.value!r} may not do this")
    return principal


StreamPrincipal = Annotated[Principal, Depends(get_stream_principal)]


def write(engine: Engine, work: Callable[[Session], T]) -> T:
    """``run_tx`` for a route: a unique-key race (two creates of one id) answers 409."""
    try:
        return run_tx(engine, work)
    except DatabaseError as exc:
        if isinstance(exc.__cause__, IntegrityError):
            raise ConflictError("conflicts with an existing record") from exc
        raise


def write_created(
    engine: Engine,
    work: Callable[[Session], T],
    who: Principal,
    created: tuple[str, str],
    fields: Mapping[str, Any],
) -> T:
    """``write`` that also records the ``<what>_created`` audit event (``created``: what and
    its id; ``fields``: what it was made with, no secret) in the same transaction."""

    def audited(session: Session) -> T:
        out = work(session)
        record_created(session, created[0], created[1], key_id=who.key_id, fields=fields)
        return out

    return write(engine, audited)
