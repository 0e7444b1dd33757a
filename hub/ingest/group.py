"""An ingest group: several hub processes settling one MQTT 5 shared subscription (PostgreSQL).

``smsa-hub serve --ingest-group NAME`` subscribes as ``$share/NAME/smsa/v1/gw/+/...``: the broker
hands each message to one member, so one gateway's records reach every member. Two rules in
the database keep per-meter order and exactly-once posting across the members:

* **A gateway is settled under its lock.** A batch takes a transaction-level advisory lock on
  every gateway it touches (``lock_gateways``: ``pg_advisory_xact_lock``, in key order, so two
  batches never wait on each other in a cycle), then reads the meters' rating states, held and
  posted records, rates and writes, and commits, which releases the locks. A member thus always
  rates from what the last member committed (no state is cached between batches), and a record
  that arrives at one member before its predecessor reaches another is held in
  ``usage_pending`` and released by whichever member settles that gateway next.
* **A member has a slot.** Mosquitto 2.0 keeps a dead member's unacknowledged messages in its
  session, and queues that session its share of new ones while it is offline (measured: a
  killed member's in-flight messages went to no other member, with or without a session
  expiry). So each process claims the lowest free slot of its group (``claim_slot``: a
  session-level ``pg_try_advisory_lock`` held on its own connection while it lives) and
  connects as ``CLIENT-NAME-SLOT`` with a persistent session: the process started in place
  of a killed one (or any new member) takes the free slot, and with it the dead member's
  session, unacknowledged messages included; they are settled as usual (a record already
  posted is a duplicate). Brokers that hand a dead session's messages to another member
  (MQTT 5 section 4.8.2) need no more than that either.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from hub.errors import HubError

# Advisory lock namespaces (the first int4 of the two-int form), "SMSA" and two more.
GATEWAY_NS = 0x534D5341
SLOT_NS = 0x534D5342
MAX_SLOTS = 1024


NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_name(group: str) -> str:
    """``group`` if it can name a shared subscription (one topic level), else ValueError."""
    if not NAME.fullmatch(group):
        raise ValueError(f"ingest group {group!r}: 1 to 64 of A-Z a-z 0-9 _ -")
    return group


class GroupError(HubError):
    """The ingest group cannot run here (no PostgreSQL, no free slot)."""


def lock_key(name: str) -> int:
    """A name's advisory lock key: its CRC-32 as a signed int4."""
    key = zlib.crc32(name.encode())
    return key - 2**32 if key >= 2**31 else key


def lock_gateways(conn: Connection, gateways: Iterable[str]) -> None:
    """Wait for the transaction-level locks of ``gateways`` (PostgreSQL), in key order."""
    keys = sorted({lock_key(g) for g in gateways})
    if keys:
        conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(:ns, k)) "
                "FROM (SELECT k FROM unnest(CAST(:keys AS int[])) AS k ORDER BY k) AS s"
            ),
            {"ns": GATEWAY_NS, "keys": keys},
        )


def require_postgresql(engine: Engine) -> None:
    if engine.url.get_backend_name() != "postgresql":
        raise GroupError("an ingest group needs PostgreSQL (its locks are PostgreSQL's)")


class Slot:
    """This process's slot in its group, held by a session-level advisory lock on a
    connection of its own until ``release`` (or until the process dies)."""

    def __init__(self, engine: Engine, group: str) -> None:
        require_postgresql(engine)
        self.group = group
        self._conn = engine.connect()
        self._conn.execution_options(isolation_level="AUTOCOMMIT")
        base = lock_key(group) % (2**31 - MAX_SLOTS)
        for slot in range(MAX_SLOTS):
            taken = self._conn.execute(
                text("SELECT pg_try_advisory_lock(:ns, :key)"),
                {"ns": SLOT_NS, "key": base + slot},
            ).scalar_one()
            if taken:
                self.number = slot
                return
        self._conn.close()
        raise GroupError(f"ingest group {group!r}: all {MAX_SLOTS} slots are taken")

    def client_id(self, client_id: str) -> str:
        return f"{client_id}-{self.group}-{self.number}"

    def release(self) -> None:
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
        finally:
            self._conn.close()
