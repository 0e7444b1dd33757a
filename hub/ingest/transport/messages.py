"""Every message the ingest processes exchange, one frozen dataclass per kind, pickled over the
socket of a ``ChildLink`` (``hub.ingest.transport.child``) and matched by type.

Pump → hub: ``Routed`` (received messages, one ``Part`` per settler), ``Up``, ``Down``,
``Protocol``, ``PubAck``, ``Cpu``. Hub → pump: ``Ack``, ``Publish``, ``PublishAll``, ``Stop``.
Hub → settler: ``Delivery`` (pickled by the pump, passed on by the hub as bytes), ``Stop``.
Settler → hub: ``Done``, ``Cpu``.

One received message stays a plain tuple (``Received``): there are tens of thousands a second,
and a tuple pickles several times faster than an object; the message that carries them is a
dataclass, one per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the settlers' credit report; the pump never loads the database layer
    from hub.ingest.model import CreditReport

# (topic, payload, received_at, mid, qos, generation): one MQTT message as the pump received it
Received = tuple[str, bytes, float, int, int, int]
Chunk = list[Received]


# -- both children ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    """Hub → child: finish what is in hand, report it, exit."""


@dataclass(frozen=True, slots=True)
class Cpu:
    """Child → hub, when it stops: the process's CPU time."""

    seconds: float


# -- hub ↔ pump --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Part:
    """Received messages for one settler: ``count`` of them, pickled as its ``Delivery``."""

    shard: int
    count: int
    pickled: bytes


@dataclass(frozen=True, slots=True)
class Routed:
    """Pump → hub: one forwarded chunk, split by settler (``settler_link.shard_of``)."""

    parts: list[Part]


@dataclass(frozen=True, slots=True)
class Up:
    """Pump → hub: connected and subscribed (connection ``generation``)."""

    generation: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class Down:
    """Pump → hub: the connection is lost, or the pump process ended."""

    reason: str


@dataclass(frozen=True, slots=True)
class Protocol:
    """Pump → hub: the MQTT version in use changed (``v5`` False: fell back to 3.1.1)."""

    v5: bool


@dataclass(frozen=True, slots=True)
class PubAck:
    """Pump → hub: the broker acknowledged the ``Publish`` that carried ``token``."""

    token: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Hub → pump: acknowledge the QoS 1 messages ``mids`` of connection ``generation``."""

    generation: int
    mids: list[int]


@dataclass(frozen=True, slots=True)
class Publish:
    """Hub → pump: publish at QoS 1; with a ``token`` the broker's PUBACK comes back as
    ``PubAck(token)``."""

    topic: str
    payload: bytes
    token: str | None = None


@dataclass(frozen=True, slots=True)
class PublishAll:
    """Hub → pump: publish each ``(topic, payload)`` at QoS 1, no PUBACK reported: a batch's
    receipts in one message, not one each (a fleet of many gateways has about one receipt per
    message it sends)."""

    items: list[tuple[str, bytes]]


# -- hub ↔ settler -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """Pump → settler (through the hub, unread): received messages the settler owns."""

    items: Chunk


@dataclass(frozen=True, slots=True)
class Done:
    """Settler → hub: a batch of ``messages`` is committed. ``acks`` are its QoS 1 mids by
    connection generation, ``counts`` its counters, ``credit`` the meters whose balance
    changed, ``receipts`` the signed ``(topic, payload)`` receipts for the pump to publish,
    ``received_at`` when the pump received the oldest of the messages (``time.time()``; 0.0 when
    there are none)."""

    acks: dict[int, list[int]]
    counts: dict[str, int]
    credit: dict[str, CreditReport]
    messages: int
    receipts: list[tuple[str, bytes]]
    received_at: float = 0.0


ToPump = Ack | Publish | PublishAll | Stop
FromPump = Routed | Up | Down | Protocol | PubAck | Cpu
PumpEvent = Up | Down | Protocol | PubAck | Cpu  # what ``PumpLink`` hands to ``on_event``
ToSettler = Delivery | Stop
FromSettler = Done | Cpu
