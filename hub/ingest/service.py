"""The ingest service: an MQTT pump process, a bounded hand-off queue, one worker thread.

The MQTT client runs in its own process (``hub.ingest.pump``) so receiving and acknowledging do
not share the GIL with settling. It forwards messages in chunks; a reader thread puts them on
the queue; the worker collects up to ``batch_size`` messages or waits ``batch_wait_s``,
processes them in one transaction (``BatchProcessor``), and only then tells the pump to
acknowledge them to the broker (paho ``manual_ack``). A crash before the commit loses nothing:
the broker redelivers every unacknowledged message of the persistent session, and (meter, seq)
deduplication makes the redelivery harmless.

After each batch the meters whose balance changed are sent a signed ``credit`` command, at most
once per ``credit_interval_s`` per meter (0: after every batch).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from hub.control.commands import build_command, topic_for
from hub.control.credit_state import (
    MeterCredit,
    build_state,
    credit_message,
    credit_rules,
    publish_credit_state,
    publish_tariff_update,
)
from hub.control.engine import CreditControl
from hub.db import read_tx
from hub.errors import NotFoundError
from hub.ingest.batch import BatchProcessor, CreditInfo, Inbound, Outcome
from hub.ingest.mqtt import BrokerUrl
from hub.ingest.pump_link import Chunk, PumpConfig, PumpLink
from hub.models import Gateway, Meter, MeterCustomer

log = logging.getLogger(__name__)

COUNTERS = (
    "received", "messages", "records", "posted", "duplicates", "quarantined", "mismatches",
    "held", "released", "late", "gaps_skipped", "events", "duplicate_events", "statuses",
    "batches", "commands", "db_errors", "worker_cpu_ms", "worker_wall_ms", "credit_cpu_ms",
    "pump_cpu_ms",
)  # fmt: skip


class IngestService:
    """MQTT usage, events and status in; ledger postings and credit commands out."""

    def __init__(  # noqa: PLR0917 (the signature the API helper calls)
        self,
        engine: Engine,
        mqtt_url: str,
        client_id: str = "smsa-hub",
        batch_size: int = 5000,
        batch_wait_s: float = 0.05,
        currency: str = "USD",
        *,
        hold_s: float = 30.0,
        credit_interval_s: float = 5.0,
        command_ttl_s: int = 3600,
        queue_max: int = 10_000,
        session_expiry_s: int = 7 * 86_400,
        mqtt_v5: bool = True,
        credit_control: bool = True,
    ) -> None:
        if batch_size < 1 or batch_wait_s < 0 or queue_max < 1:
            raise ValueError("batch_size and queue_max must be >= 1, batch_wait_s >= 0")
        self.engine = engine
        self.url = BrokerUrl.parse(mqtt_url)  # a bad URL fails here, before any process
        self.mqtt_url = mqtt_url
        self.client_id = client_id
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.currency = currency
        self.credit_interval_s = credit_interval_s
        self.command_ttl = timedelta(seconds=command_ttl_s)
        self.session_expiry_s = session_expiry_s
        self.mqtt_v5 = mqtt_v5
        self.receive_maximum = min(queue_max, 65_535)
        self.processor = BatchProcessor(engine, currency=currency, hold_s=hold_s)
        self.counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        # Twice the broker's in-flight allowance: messages of a dropped connection may still
        # be queued while the new connection refills; a full queue blocks (back-pressure).
        self._queue: queue.Queue[Inbound] = queue.Queue(maxsize=2 * self.receive_maximum)
        self._pump: PumpLink | None = None
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._pending = 1  # held records (unknown at start: check once)
        self._dirty: dict[str, CreditInfo] = {}
        self._last_sent: dict[str, float] = {}
        self._busy = False
        # Credit control (hub.control) runs after each committed batch on the meters whose
        # balance changed; its commands and credit states go out through this client.
        self.control: CreditControl | None = (
            CreditControl(engine, publish=self.publish, ttl=self.command_ttl)
            if credit_control
            else None
        )

    # -- public --------------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    @property
    def pump_pid(self) -> int | None:
        """The MQTT pump process (``hub.ingest.pump``), None when not started."""
        return self._pump.pid if self._pump is not None else None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight (for tests and benchmarks)."""
        return self._queue.empty() and not self._busy

    def start(self) -> None:
        if self._worker is not None:
            return
        self._stopping.clear()
        cfg = PumpConfig(url=self.mqtt_url, client_id=self.client_id, v5=self.mqtt_v5,
                         session_expiry_s=self.session_expiry_s,
                         receive_maximum=self.receive_maximum)  # fmt: skip
        self._pump = PumpLink(cfg, self._on_messages, self._on_state)
        self._pump.start()
        self._worker = threading.Thread(target=self._run, name="smsa-ingest", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then disconnect; unprocessed messages stay unacknowledged
        at the broker and come back on the next start."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        self._connected.clear()
        while not self._queue.empty():  # unacknowledged: the broker keeps them for the session
            self._queue.get_nowait()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 (queued by paho while disconnected)."""
        if self._pump is None:
            raise RuntimeError("the ingest service is not started")
        if not self._pump.publish(topic, payload):
            log.warning("ingest: MQTT pump not running; %s not published", topic)
            return
        self.counters["commands"] += 1

    def publish_credit_state(self, meter_id: str, reason: str = "credit state") -> str | None:
        """Send one meter its credit state now (after a top-up); the command id or None."""
        return publish_credit_state(self.engine, self.publish, meter_id, reason=reason,
                                    ttl=self.command_ttl)  # fmt: skip

    def publish_account_credit_state(self, account_id: str) -> int:
        """Send every meter paid (wholly or partly) by ``account_id`` its credit state."""
        sent = 0
        for meter_id in meters_paid_by(self.engine, account_id):
            if self.publish_credit_state(meter_id, reason="top-up") is not None:
                sent += 1
        return sent

    def publish_tariff_update(self, tariff_id: str) -> int:
        """Send every meter on ``tariff_id`` its credit state with the version now in force."""
        return publish_tariff_update(self.engine, self.publish, tariff_id, ttl=self.command_ttl)

    def send_command(
        self, meter_id: str, action: str, *, reason: str = "", params: dict[str, Any] | None = None
    ) -> str:
        """Build, sign and publish a command to the meter's gateway; returns its id."""
        with read_tx(self.engine) as conn:
            meters = Meter.__table__  # type: ignore[attr-defined]
            gateways = Gateway.__table__  # type: ignore[attr-defined]
            row = conn.execute(
                select(gateways.c.id, gateways.c.command_key)
                .join(meters, meters.c.gateway_id == gateways.c.id)
                .where(meters.c.id == meter_id)
            ).first()
        if row is None:
            raise NotFoundError("meter", meter_id)
        command = build_command(row.command_key, meter_id, action, params=params, reason=reason,
                                ttl=self.command_ttl)  # fmt: skip
        self.publish(topic_for(row.id), json.dumps(command, separators=(",", ":")).encode())
        return str(command["id"])

    # -- from the pump (its reader thread: no database work here) -----------------------------

    def _on_messages(self, chunk: Chunk) -> None:
        for topic, payload, received_at, mid, qos, generation in chunk:
            self.counters["received"] += 1
            when = datetime.fromtimestamp(received_at, UTC)
            item = Inbound(topic, payload, when, mid, qos, generation)
            while not self._stopping.is_set():  # back-pressure when full, never when stopping
                try:
                    self._queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            # stopping: dropped unacknowledged, the broker delivers it again on the next start

    def _on_state(self, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "up":
            log.info("ingest: connected (session present: %s)", args[1])
            self._connected.set()
        elif kind == "down":
            self._connected.clear()
        elif kind == "protocol":
            self.mqtt_v5 = bool(args[0])
        elif kind == "cpu":
            self.counters["pump_cpu_ms"] += int(float(args[0]) * 1000)

    # -- worker --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._loop()
                return
            except Exception:  # a bug must not silently stop ingest: log, keep consuming
                log.exception("ingest: worker error; continuing")
                self._busy = False
                time.sleep(0.5)

    def _loop(self) -> None:
        next_release = 0.0
        while True:
            items = self._collect()
            if not items and self._stopping.is_set():
                break
            due = self._pending > 0 and time.monotonic() >= next_release
            if items or due:
                self._busy = True
                cpu, wall = time.thread_time(), time.monotonic()
                outcome = self._process(items)
                self.counters["worker_cpu_ms"] += int((time.thread_time() - cpu) * 1000)
                self.counters["worker_wall_ms"] += int((time.monotonic() - wall) * 1000)
                if outcome is None:
                    break  # stopping while the database was unreachable: nothing acked
                next_release = time.monotonic() + 1.0
                self._ack(items)
                self._account(outcome)
                self._run_control(outcome)
                if self._stopping.is_set():
                    self._busy = False
                    break  # what is still queued is unacknowledged: the broker keeps it
            self._busy = False
            cpu = time.thread_time()
            self._flush_credit()
            self.counters["credit_cpu_ms"] += int((time.thread_time() - cpu) * 1000)
        self._flush_credit(force=True)  # the newest states of the last batches, before leaving

    def _collect(self) -> list[Inbound]:
        q = self._queue
        try:
            items = [q.get(timeout=0.1)]
        except queue.Empty:
            return []
        self._busy = True
        deadline = time.monotonic() + self.batch_wait_s
        while len(items) < self.batch_size:
            try:
                items.append(q.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                items.append(q.get(timeout=remaining))
            except queue.Empty:
                break
        return items

    def _process(self, items: list[Inbound]) -> Outcome | None:
        delay = 0.1
        failing = False
        while True:
            try:
                outcome = self.processor.process(items)
                if failing:
                    log.error("ingest: database reachable again")
                return outcome
            except Exception as exc:  # the database is down or broken: retry, never drop
                self.counters["db_errors"] += 1
                if not failing:
                    log.error("ingest: batch of %d not processed (%s); retrying", len(items), exc)
                else:
                    log.debug("ingest: still failing: %s", exc)
                failing = True
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, 5.0)

    def _ack(self, items: list[Inbound]) -> None:
        pump = self._pump
        if pump is None:
            return
        by_generation: dict[int, list[tuple[int, int]]] = {}
        for item in items:
            if item.qos > 0:
                by_generation.setdefault(item.generation, []).append((item.mid, item.qos))
        # The pump acknowledges only the current connection's messages: one of an earlier
        # connection is redelivered on the new one, where its old mid may name another message.
        for generation, mids in by_generation.items():
            pump.ack(generation, mids)

    def _account(self, outcome: Outcome) -> None:
        for name, value in outcome.counts.items():
            self.counters[name] = self.counters.get(name, 0) + value
        self.counters["batches"] += 1
        self._pending = outcome.pending
        self._dirty.update(outcome.credit)

    def _run_control(self, outcome: Outcome) -> None:
        if self.control is None or not outcome.credit:
            return
        known = {m: (i.balance, i.flags, i.protected) for m, i in outcome.credit.items()}
        try:
            actions = self.control.after_postings(sorted(outcome.credit), known=known)
        except Exception:  # committed postings stand; the next batch or tick re-evaluates
            log.exception("ingest: credit control after a batch failed")
            return
        now = time.monotonic()
        for action in actions:
            if action.kind == "credit_state" and action.meter_id is not None:
                self._dirty.pop(action.meter_id, None)  # a newer state was just sent
                self._last_sent[action.meter_id] = now

    def _flush_credit(self, force: bool = False) -> None:
        if not self._dirty or self._pump is None:
            return
        now = time.monotonic()
        for meter_id in list(self._dirty):
            if not force and now - self._last_sent.get(meter_id, -1e9) < self.credit_interval_s:
                continue
            info = self._dirty.pop(meter_id)
            self._last_sent[meter_id] = now
            if not info.command_key:
                continue
            try:
                topic, payload = credit_message(to_meter_credit(info), ttl=self.command_ttl)
            except ValueError as exc:
                log.warning("credit state of %s not sent: %s", meter_id, exc)
                continue
            self.publish(topic, payload)


def to_meter_credit(info: CreditInfo) -> MeterCredit:
    rules = credit_rules(info.flags, info.protected, info.alternate_available)
    state = build_state(info.tariff, info.balance, info.state, rules)
    return MeterCredit(info.meter_id, info.gateway_id, info.command_key, info.account_id, state)


def meters_paid_by(engine: Engine, account_id: str) -> list[str]:
    """Meters whose charge ``account_id`` pays, wholly or in part."""
    meters = Meter.__table__  # type: ignore[attr-defined]
    sharing = MeterCustomer.__table__  # type: ignore[attr-defined]
    with read_tx(engine) as conn:
        found = set(
            conn.execute(select(meters.c.id).where(meters.c.customer_id == account_id)).scalars()
        )
        found |= set(
            conn.execute(
                select(sharing.c.meter_id).where(sharing.c.customer_id == account_id)
            ).scalars()
        )
        for row in conn.execute(
            select(meters.c.id, meters.c.split_rule).where(meters.c.split_rule.is_not(None))
        ):
            if account_id in ((row.split_rule or {}).get("accounts") or {}):
                found.add(row.id)
    return sorted(found)


Publisher = Callable[[str, bytes], None]
