"""The ingest service: an MQTT pump process, settling processes, and a coordinator thread.

The MQTT client runs in its own process (``hub.ingest.transport.pump``) so receiving and
acknowledging do not share the GIL with settling. It forwards messages in chunks, already split by
the settler that owns their gateway (``hub.ingest.settler``, ``workers`` of them), and this process
passes each part on unread. A settler collects up to ``batch_size`` messages or waits
``batch_wait_s``, processes them in one transaction (``BatchProcessor``) and reports them; only
then does the pump acknowledge them to the broker (paho ``manual_ack``). A crash before the commit
loses nothing: the broker redelivers every unacknowledged message of the persistent session, and
(meter, seq) deduplication makes the redelivery harmless.

The coordinator runs credit control on the meters whose balance changed and queues for each its
signed ``credit`` state, at most once per ``credit_interval_s`` per meter (0: after every batch).
Every command goes through the durable command table (``hub.commands``): this service runs its
dispatcher (``hub.ingest.outlet``), which publishes through the pump and learns of the broker's
PUBACK from it. After each batch the settler's signed receipts (``hub.ingest.receipts``) go out
through the pump too. ``smsa-hub serve`` builds the command path and credit control once
(``hub.compose``) and hands them in; built alone (tests, ``hub.ingest.runner``) the service
makes its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from hub.commands.store import enqueue_many
from hub.control.credit_state import (
    credit_command_for,
    credit_state,
)
from hub.control.engine import CreditControl
from hub.db import write_tx
from hub.ingest.credit_report import to_meter_credit
from hub.ingest.group import Slot, check_name, require_postgresql
from hub.ingest.model import CreditInfo, CreditReport, Derived
from hub.ingest.outlet import CommandPath
from hub.ingest.transport.messages import (
    Cpu,
    Done,
    Down,
    FromSettler,
    Part,
    Protocol,
    PubAck,
    PumpEvent,
    Up,
)
from hub.ingest.transport.mqtt import MAX_RECEIVE, BrokerUrl
from hub.ingest.transport.pump_link import PumpConfig, PumpLink
from hub.ingest.transport.settler_link import SettlerConfig, SettlerLink
from hub.metrics import IngestMetrics
from hub.tokens.store import setups as token_setups

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0  # credit states due are queued in the command table at most this often

COUNTERS = (
    "received", "messages", "records", "posted", "duplicates", "quarantined", "mismatches",
    "held", "released", "late", "gaps_skipped", "events", "duplicate_events", "statuses",
    "batches", "commands", "db_errors", "worker_cpu_ms", "worker_wall_ms", "credit_cpu_ms",
    "pump_cpu_ms", "settler_cpu_ms", "receipts", "receipt_bytes", "events_over_quota",
    "commands_settled", "awaiting_resume", "stale_epoch", "credit_states", "credit_derived",
)  # fmt: skip


class IngestService:
    """MQTT usage, events and status in; ledger postings and credit commands out."""

    def __init__(  # noqa: PLR0917 (the signature the API helper calls)
        self,
        engine: Engine,
        mqtt_url: str,
        client_id: str = "smsa-hub",
        batch_size: int = 10_000,
        batch_wait_s: float = 0.05,
        currency: str = "USD",
        *,
        workers: int = 2,
        hold_s: float = 30.0,
        credit_interval_s: float = 5.0,
        command_ttl_s: int = 3600,
        credit_refresh_s: float = 21_600,
        queue_max: int | None = None,
        session_expiry_s: int = 7 * 86_400,
        mqtt_v5: bool = True,
        credit_control: bool = True,
        commands: CommandPath | None = None,
        control: CreditControl | None = None,
        ca_file: str | None = None,
        group: str | None = None,
    ) -> None:
        """``group``: settle as one member of that ingest group (``hub.ingest.group``,
        PostgreSQL): a shared subscription, and the client id ``CLIENT_ID-GROUP-SLOT``.
        ``commands``: the dispatcher and its outlet; ``control``: the process's credit control
        (woken through ``commands.dispatcher``). Built here when not given; ``credit_control``
        False: none at all."""
        if queue_max is None:  # each settler settles one batch while the next one arrives
            queue_max = 2 * workers * batch_size
        if batch_size < 1 or batch_wait_s < 0 or queue_max < 1 or workers < 1:
            raise ValueError("batch_size, queue_max and workers must be >= 1, batch_wait_s >= 0")
        self.engine = engine
        self.db_url = engine.url.render_as_string(hide_password=False)
        in_memory = engine.url.database in (None, "", ":memory:")
        if engine.url.get_backend_name() == "sqlite" and in_memory:
            raise ValueError("ingest needs a database file or server: settlers are processes")
        BrokerUrl.parse(mqtt_url)  # a bad URL fails here, before any process starts
        self.mqtt_url = mqtt_url
        self.ca_file = ca_file
        self.client_id = client_id
        self.group = check_name(group) if group is not None else None
        if self.group is not None:
            require_postgresql(engine)
        self._slot: Slot | None = None
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.currency = currency
        self.workers = workers
        self.hold_s = hold_s
        self.credit_interval_s = credit_interval_s
        self.command_ttl = timedelta(seconds=command_ttl_s)
        self.credit_refresh_s = credit_refresh_s
        self.session_expiry_s = session_expiry_s
        self.mqtt_v5 = mqtt_v5
        self.receive_maximum = min(queue_max, MAX_RECEIVE)
        self._counters: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.metrics = IngestMetrics()  # latency, batch size and settle time histograms
        self._pump: PumpLink | None = None
        self._settlers: list[SettlerLink] = []
        # credit changes of settled batches, for the coordinator (credit control, credit states)
        self._reports: queue.Queue[dict[str, CreditReport]] = queue.Queue()
        self._count_lock = threading.Lock()
        self._in_flight = [0] * workers  # messages handed to each settler, not yet reported
        self._flight_lock = threading.Lock()
        self._coordinator: threading.Thread | None = None
        self._stopping = threading.Event()
        self._settlers_stopped = threading.Event()
        self._connected = threading.Event()
        self._dirty: dict[str, CreditInfo] = {}
        self._last_sent: dict[str, float] = {}
        self._busy = False
        # Every command goes out from the durable command table, published through the pump.
        self._commands = commands or CommandPath.build(engine)
        self.dispatcher = self._commands.dispatcher
        # Credit control (hub.control) runs after each committed batch on the meters whose
        # balance changed; it queues its commands and credit states in the command table.
        if control is None and credit_control:
            control = CreditControl(engine, wake=self.wake_commands, ttl=self.command_ttl)
        self.control: CreditControl | None = control if credit_control else None

    # -- public --------------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """What the service counted (``commands``: those the pump took to publish)."""
        with self._count_lock:
            return {**self._counters, "commands": self.dispatcher.published}

    @property
    def queue_depth(self) -> int:
        """Messages received and not yet settled."""
        return sum(self._in_flight)

    @property
    def pump_pid(self) -> int | None:
        """The MQTT pump process (``hub.ingest.transport.pump``), None when not started."""
        return self._pump.pid if self._pump is not None else None

    @property
    def settler_pids(self) -> list[int | None]:
        """The settling processes (``hub.ingest.settler``), one per shard."""
        return [s.pid for s in self._settlers]

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def idle(self) -> bool:
        """Nothing received that is not settled and reported (for tests and benchmarks)."""
        return self.queue_depth == 0 and self._reports.empty() and not self._busy

    def start(self) -> None:
        if self._coordinator is not None:
            return
        self._stopping.clear()
        self._settlers_stopped.clear()
        self._settlers = [
            SettlerLink(self._settler_config(k), self._on_report, self._on_settler_restart)
            for k in range(self.workers)
        ]
        for settler in self._settlers:
            settler.start()
        client_id = self.client_id
        if self.group is not None:
            self._slot = Slot(self.engine, self.group)
            client_id = self._slot.client_id(client_id)
            log.info("ingest: group %s, slot %d, client id %s", self.group, self._slot.number,
                     client_id)  # fmt: skip
        cfg = PumpConfig(url=self.mqtt_url, client_id=client_id, v5=self.mqtt_v5,
                         session_expiry_s=self.session_expiry_s,
                         receive_maximum=self.receive_maximum, shards=self.workers,
                         ca_file=self.ca_file, share=self.group)  # fmt: skip
        self._pump = PumpLink(cfg, self._on_messages, self._on_event)
        self._pump.start()
        self._commands.outlet.attach(self._pump)
        self.dispatcher.start()
        self._coordinator = threading.Thread(target=self._run, name="smsa-ingest", daemon=True)
        self._coordinator.start()

    def _settler_config(self, shard: int) -> SettlerConfig:
        return SettlerConfig(db=self.db_url, shard=shard, shards=self.workers,
                             batch_size=self.batch_size, batch_wait_s=self.batch_wait_s,
                             currency=self.currency, hold_s=self.hold_s,
                             shared=self.group is not None,
                             credit_refresh_s=self.credit_refresh_s)  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """Each settler finishes the batch in hand, which is acknowledged; then disconnect.
        Unsettled messages stay unacknowledged at the broker and come back on the next start."""
        self._stopping.set()
        for settler in self._settlers:
            settler.stop(timeout)
        self._settlers_stopped.set()
        if self._coordinator is not None:
            self._coordinator.join(timeout)
            self._coordinator = None
        self.dispatcher.stop()
        self._commands.outlet.attach(None)
        if self._pump is not None:
            self._pump.stop()
            self._pump = None
        self._settlers = []
        self._in_flight = [0] * self.workers
        self._connected.clear()
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def wake_commands(self) -> None:
        """Commands were queued: have the dispatcher publish them now."""
        self.dispatcher.wake()

    # -- from the pump and the settlers (their reader threads: no database work here) -------

    def _on_messages(self, parts: list[Part]) -> None:
        """Messages the pump split by settler and pickled: passed on as they are."""
        self._count(received=sum(part.count for part in parts))
        if self._stopping.is_set():
            return  # unacknowledged: the broker delivers them again on the next start
        for part in parts:
            with self._flight_lock:
                self._in_flight[part.shard] += part.count
            if not self._settlers[part.shard].send_pickled(part.pickled):
                # the settler is being restarted; when it is back the pump reconnects and
                # the broker delivers these again
                with self._flight_lock:
                    self._in_flight[part.shard] -= part.count

    def _on_event(self, event: PumpEvent) -> None:
        match event:
            case Up(session_present=session_present):
                log.info("ingest: connected (session present: %s)", session_present)
                self._connected.set()
            case Down():
                self._connected.clear()
            case Protocol(v5):
                self.mqtt_v5 = v5
            case Cpu(seconds):
                self._count(pump_cpu_ms=int(seconds * 1000))
            case PubAck(token):
                self.dispatcher.on_puback(token)

    def _on_report(self, shard: int, message: FromSettler) -> None:
        match message:
            case Cpu(seconds):
                self._count(settler_cpu_ms=int(seconds * 1000))
            case Done():
                self._on_done(shard, message)

    def _on_done(self, shard: int, done: Done) -> None:
        """A settler committed a batch: acknowledge it now (before credit control, which may be
        slow, so the broker's window of unacknowledged messages keeps moving), count it, and
        leave its credit changes to the coordinator."""
        self._ack(done.acks)
        pump = self._pump
        if pump is not None:
            pump.publish_all(done.receipts)
        with self._flight_lock:
            self._in_flight[shard] = max(0, self._in_flight[shard] - done.messages)
        self._count(batches=1, **done.counts)
        settle_s = done.counts.get("worker_wall_ms", 0) / 1000
        self.metrics.batch(done.messages, settle_s, done.received_at, time.time())
        self._reports.put(done.credit)

    def _count(self, **amounts: int) -> None:
        with self._count_lock:
            for name, value in amounts.items():
                self._counters[name] = self._counters.get(name, 0) + value

    def _on_settler_restart(self, shard: int) -> None:
        """A settler died: what it held was never acknowledged. Reconnecting (a new pump, new
        generations) has the broker deliver every unacknowledged message again; those already
        settled elsewhere come back as duplicates."""
        with self._flight_lock:
            self._in_flight[shard] = 0
        if self._pump is not None and not self._stopping.is_set():
            self._pump.restart()

    # -- coordinator ---------------------------------------------------------------------------

    def _run(self) -> None:
        flushed = 0.0
        while True:
            try:
                credit = self._reports.get(timeout=0.1)
            except queue.Empty:
                if self._settlers_stopped.is_set():
                    break
            else:
                self._busy = True
                while not self._reports.empty():  # batches settled meanwhile: newest state wins
                    credit = {**credit, **self._reports.get_nowait()}
                try:
                    for meter_id, info in credit.items():
                        if not isinstance(info, CreditInfo):  # its agent works it out alone
                            self._dirty.pop(meter_id, None)
                            self._count(credit_derived=1)
                        else:
                            self._dirty[meter_id] = info
                    self._run_control(credit)
                except Exception:  # a bug must not stop ingest: log, keep going
                    log.exception("ingest: credit control after settled batches failed")
                self._busy = False
            if time.monotonic() - flushed >= FLUSH_EVERY_S:  # one write transaction a second
                flushed = time.monotonic()
                cpu = time.thread_time()
                self._flush_credit()
                self._count(credit_cpu_ms=int((time.thread_time() - cpu) * 1000))
        self._flush_credit(force=True)  # the newest states of the last batches, before leaving

    def _ack(self, acks: dict[int, list[int]]) -> None:
        pump = self._pump
        if pump is None:
            return
        # The pump acknowledges only the current connection's messages: one of an earlier
        # connection is redelivered on the new one, where its old mid may name another message.
        for generation, mids in acks.items():
            pump.ack(generation, mids)

    def _run_control(self, credit: dict[str, CreditReport]) -> None:
        wanted = {m: i for m, i in credit.items() if i is not None}  # None: at rest
        if self.control is None or not wanted:
            return
        known = {m: (i.balance, i.flags, i.protected) for m, i in wanted.items()
                 if isinstance(i, Derived) or i.rules is None}  # shared: evaluated  # fmt: skip
        try:
            actions = self.control.after_postings(sorted(wanted), known=known)
        except Exception:  # committed postings stand; the next batch or tick re-evaluates
            log.exception("ingest: credit control after a batch failed")
            return
        now = time.monotonic()
        for action in actions:
            if action.kind == "credit_state" and action.meter_id is not None:
                self._dirty.pop(action.meter_id, None)  # a newer state was just sent
                self._last_sent[action.meter_id] = now

    def _flush_credit(self, force: bool = False) -> None:
        if not self._dirty:
            return
        now = time.monotonic()
        due: list[CreditInfo] = []
        for meter_id in list(self._dirty):
            if not force and now - self._last_sent.get(meter_id, -1e9) < self.credit_interval_s:
                continue
            info = self._dirty.pop(meter_id)
            self._last_sent[meter_id] = now
            if info.command_key:
                due.append(info)
        if not due:
            return
        try:
            with write_tx(self.engine) as conn:
                commands = [c for c in (self._state_command(conn, i, tokens)
                                        for i, tokens in stale_tokens(conn, due)) if c]  # fmt: skip
                enqueue_many(conn, commands)
        except Exception:  # a bug or a lost connection must not stop ingest: send them next time
            log.exception("ingest: queueing %d credit states failed; retried", len(due))
            for info in due:
                self._dirty.setdefault(info.meter_id, info)
                self._last_sent.pop(info.meter_id, None)
            return
        self.wake_commands()

    def _state_command(
        self, conn: Connection, info: CreditInfo, stale: bool
    ) -> tuple[str, dict[str, Any]] | None:
        """The credit command of ``info``; built afresh from the database when a token of the
        meter settled or was cancelled since ``info`` was read (its balance and token lists
        would otherwise go out older than a state already queued)."""
        try:
            credit = credit_state(conn, info.meter_id) if stale else to_meter_credit(info)
            self._count(credit_states=1)
            return info.gateway_id, credit_command_for(credit, ttl=self.command_ttl)
        except (ValueError, LookupError) as exc:
            log.warning("credit state of %s not sent: %s", info.meter_id, exc)
            return None


def stale_tokens(conn: Connection, infos: list[CreditInfo]) -> list[tuple[CreditInfo, bool]]:
    """Each ``info`` and whether its meter's tokens changed since it was read (two queries)."""
    now = token_setups(conn, {i.meter_id: i.command_key for i in infos})
    return [(i, now.get(i.meter_id) != i.tokens) for i in infos]
