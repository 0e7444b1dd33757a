"""POST /gateways (admin): a gateway with its command key and MQTT credentials, shown once.

The MQTT user name is the gateway id (the broker ACL in hardware/mosquitto/acl relies on it,
and the broker keys the gateway's session by it). The password is stored only as a Mosquitto
password-file hash (PBKDF2-SHA512, ``$7$``), so ``smsa-hub mosquitto-config`` can write the
broker's password file from the database. Ids that name the hub's own MQTT users (the user in
``SMSA_HUB_MQTT``, anything starting with ``smsa-``) are refused: 422 on ``id``.

``POST /gateways/{id}/rotate`` (admin) makes new credentials, shown once, and queues them to
the gateway; the old ones hold until it acknowledges (``hub.services.gateways``).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write, write_created
from hub.api.jsonbody import HubRoute
from hub.api.schemas import GatewayCreated, GatewayIn, RotationOut
from hub.errors import ConflictError, InvalidInputError, NotFoundError
from hub.gateways import mosquitto_hash, mqtt_user, new_password, reserved_reason
from hub.models import Gateway, GatewayPublic
from hub.services.gateways import Rotated, rotate
from protocol.signing import new_key

router = APIRouter(prefix="/gateways", tags=["gateways"], route_class=HubRoute)


@router.post("", status_code=201, response_model=GatewayCreated)
def create(body: GatewayIn, ctx: ContextDep, who: Admin) -> GatewayCreated:
    reserved = reserved_reason(body.id, mqtt_user(ctx.settings.mqtt))
    if reserved is not None:
        raise InvalidInputError("id", reserved)
    command_key, password = new_key(), new_password()

    def work(session: Session) -> None:
        if session.get(Gateway, body.id) is not None:
            raise ConflictError(f"gateway {body.id!r} already exists")
        session.add(
            Gateway(
                id=body.id,
                command_key=command_key,
                mqtt_username=body.id,
                mqtt_password_hash=mosquitto_hash(password),
            )
        )
        session.flush()

    write_created(ctx.engine, work, who, ("gateway", body.id), {"mqtt_username": body.id})
    return GatewayCreated(
        id=body.id, command_key=command_key, mqtt_username=body.id, mqtt_password=password
    )


@router.get("/{gateway_id}", response_model=GatewayPublic)
def get(gateway_id: str, session: SessionDep, _: Operator) -> GatewayPublic:
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFoundError("gateway", gateway_id)
    return GatewayPublic(id=gateway.id, mqtt_username=gateway.mqtt_username)


@router.post("/{gateway_id}/rotate", status_code=202, response_model=RotationOut)
def rotate_credentials(gateway_id: str, ctx: ContextDep, who: Admin) -> RotationOut:
    ttl = timedelta(seconds=ctx.settings.command_ttl_s)

    def work(session: Session) -> Rotated:
        return rotate(session, gateway_id, key_id=who.key_id, ttl=ttl)

    done = write(ctx.engine, work)
    return RotationOut(
        id=done.gateway_id,
        command_id=done.command_id,
        command_key=done.command_key,
        mqtt_username=done.gateway_id,
        mqtt_password=done.mqtt_password,
    )
