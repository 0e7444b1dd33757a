"""A settling process of the ingest service: ``python -m hub.ingest.settler --fd N CONFIG``.

The hub runs ``workers`` of these. Each owns the gateways whose id hashes to its shard
(``hub.ingest.transport.settler_link.shard_of``), so every meter's records are rated by one
process, in seq order, with its rating state cached there. A settler collects up to ``batch_size``
messages or waits ``batch_wait_s``, processes them in one transaction (``BatchProcessor``) and only
then reports them to the hub as done, which has the pump acknowledge them to the broker. Held
records of its own gateways are released once their hold time is over.

Parent → child (``hub.ingest.transport.messages``): ``Delivery`` (received messages, pickled
by the pump), ``Stop`` (finish the batch in hand, report it, exit; what is still queued stays
unacknowledged and the broker delivers it again).
Child → parent: ``Done`` after each committed batch, with the signed receipts for what the batch
settled (``hub.ingest.receipts``) for the pump to publish; ``Cpu`` when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from hub.db import make_engine
from hub.ingest.batch import BatchProcessor, Inbound, Outcome
from hub.ingest.receipts import command_keys
from hub.ingest.transport.child import exit_child, log_to_stderr, serve_parent, start_child
from hub.ingest.transport.messages import Chunk, Cpu, Delivery, Done, ToSettler
from hub.ingest.transport.settler_link import SettlerConfig, gateway_shard

log = logging.getLogger(__name__)

RELEASE_EVERY_S = 1.0  # how often held records are checked while some are held
IDLE_WAIT_S = 0.1  # longest the loop sleeps with nothing to do (held records, stopping)


class Inbox:
    """Chunks of messages from the reader thread, taken by the settling loop in batches."""

    def __init__(self) -> None:
        self._chunks: deque[Chunk] = deque()
        self._ready = threading.Condition()

    def put(self, chunk: Chunk) -> None:
        with self._ready:
            self._chunks.append(chunk)
            self._ready.notify()

    def take(self, limit: int, wait_s: float) -> Chunk:
        """Up to ``limit`` messages: waits ``IDLE_WAIT_S`` for a first one, then up to
        ``wait_s`` for more; [] when none came."""
        with self._ready:
            if not self._chunks and not self._ready.wait(IDLE_WAIT_S):
                return []
            taken: Chunk = []
            deadline = time.monotonic() + wait_s
            while True:
                while self._chunks and len(taken) < limit:
                    chunk = self._chunks.popleft()
                    room = limit - len(taken)
                    if len(chunk) > room:
                        self._chunks.appendleft(chunk[room:])
                        chunk = chunk[:room]
                    taken.extend(chunk)
                remaining = deadline - time.monotonic()
                if len(taken) >= limit or remaining <= 0 or not self._ready.wait(remaining):
                    return taken


class Settler:
    def __init__(self, cfg: SettlerConfig, conn: Connection) -> None:
        self.cfg = cfg
        self.conn = conn
        self.engine = make_engine(cfg.db)
        self.processor = BatchProcessor(
            self.engine,
            currency=cfg.currency,
            hold_s=cfg.hold_s,
            owns=lambda gateway: gateway_shard(gateway, cfg.shards) == cfg.shard,
            shared=cfg.shared,
            credit_refresh_s=cfg.credit_refresh_s,
        )
        self._inbox = Inbox()
        self._stopping = threading.Event()
        self._pending = 1  # held records (unknown at start: check once)
        self._db_errors = 0  # failed attempts since the last report

    def run(self) -> None:
        reader = threading.Thread(target=self._read, name="settler-read", daemon=True)
        reader.start()
        try:
            self._loop()
        finally:
            self.engine.dispose()
            with contextlib.suppress(OSError, ValueError):  # unless the hub is gone
                self.conn.send(Cpu(time.process_time()))

    def _read(self) -> None:
        serve_parent(self.conn, self._take)
        self._stopping.set()

    def _take(self, message: ToSettler) -> bool:
        if isinstance(message, Delivery):
            self._inbox.put(message.items)
        return True

    def _loop(self) -> None:
        next_release = 0.0
        while True:
            items = self._collect()
            if not items and self._stopping.is_set():
                return
            due = self._pending > 0 and time.monotonic() >= next_release
            if not items and not due:
                continue
            cpu, wall = time.thread_time(), time.monotonic()
            outcome = self._process(items)
            if outcome is None:
                return  # stopping while the database was unreachable: nothing acknowledged
            outcome.counts["worker_cpu_ms"] += int((time.thread_time() - cpu) * 1000)
            outcome.counts["worker_wall_ms"] += int((time.monotonic() - wall) * 1000)
            outcome.counts["db_errors"] += self._db_errors
            self._db_errors = 0
            next_release = time.monotonic() + RELEASE_EVERY_S
            self._pending = outcome.pending
            acks: dict[int, list[int]] = {}
            for item in items:
                if item.qos > 0:
                    acks.setdefault(item.generation, []).append(item.mid)
            receipts = self._receipts(outcome)
            try:
                self.conn.send(Done(acks, dict(outcome.counts), outcome.credit, len(items),
                                    receipts, _oldest(items)))  # fmt: skip
            except (OSError, ValueError):
                return  # the hub is gone: the broker delivers these again to the next one
            if self._stopping.is_set():
                return

    def _receipts(self, outcome: Outcome) -> list[tuple[str, bytes]]:
        """The signed receipts for what the committed batch settled (none on a database error:
        the gateways send those records again and get them with their duplicates)."""
        settled = outcome.settled
        try:
            keys = command_keys(self.engine, settled.gateways())
        except Exception as exc:
            log.warning("ingest: receipts of a batch not sent (%s); the gateways resend", exc)
            return []
        receipts = settled.receipts(keys, datetime.now(UTC))
        outcome.counts["receipts"] += len(receipts)
        outcome.counts["receipt_bytes"] += sum(len(p) for _, p in receipts)
        return receipts

    def _collect(self) -> list[Inbound]:
        return [
            Inbound(topic, payload, datetime.fromtimestamp(at, UTC), mid, qos, generation)
            for topic, payload, at, mid, qos, generation in self._inbox.take(
                self.cfg.batch_size, self.cfg.batch_wait_s
            )
        ]

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
                self._db_errors += 1
                if not failing:
                    log.error("ingest: batch of %d not processed (%s); retrying", len(items), exc)
                failing = True
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, 5.0)


def _oldest(items: list[Inbound]) -> float:
    """When the oldest of ``items`` was received (``time.time()``), 0.0 for none."""
    return min(item.received_at for item in items).timestamp() if items else 0.0


def main(argv: list[str] | None = None) -> int:
    text, conn = start_child("python -m hub.ingest.settler", argv)
    cfg = SettlerConfig.from_json(text)
    log_to_stderr(cfg.log_level)
    Settler(cfg, conn).run()
    return 0


if __name__ == "__main__":
    exit_child(main())
