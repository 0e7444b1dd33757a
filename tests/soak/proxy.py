"""A TCP proxy the soak owns, between an MQTT client (agent or hub) and the broker.

It runs its own asyncio loop in a thread and forwards bytes both ways. Faults:

- ``partition()``: every connection is reset and new ones are refused until ``heal()``;
- ``hold()``: connections stay open but nothing is forwarded (a silent partition: only the
  MQTT keepalive notices); ``heal()`` then resets the held connections, as TCP would give up;
- ``delay(seconds)``: every chunk is forwarded that much later, in order.
"""

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from tests.support import free_port

log = logging.getLogger(__name__)

OPEN, PARTITIONED, HELD = "open", "partitioned", "held"


class Proxy:
    def __init__(self, name: str, target_port: int) -> None:
        self.name = name
        self.port = free_port()
        self.target_port = target_port
        self.mode = OPEN
        self.latency = 0.0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"proxy-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"proxy {self.name} did not start")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._stop())
            self._thread.join(10)

    def partition(self) -> None:
        self.mode = PARTITIONED
        self._call(self._reset_all())

    def hold(self) -> None:
        self.mode = HELD

    def delay(self, seconds: float) -> None:
        self.latency = seconds

    def heal(self) -> None:
        was = self.mode
        self.mode, self.latency = OPEN, 0.0
        if was == HELD:
            self._call(self._reset_all())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            await self._reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stop(self) -> None:
        self._stopped.set()

    async def _reset_all(self) -> None:
        for writer in list(self._writers):
            _abort(writer)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == PARTITIONED:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _abort(writer)
            return
        self.connections += 1
        self._writers |= {writer, up_writer}
        pipes = [self._pipe(reader, up_writer), self._pipe(up_reader, writer)]
        await asyncio.gather(*pipes, return_exceptions=True)
        for w in (writer, up_writer):
            self._writers.discard(w)
            _abort(w)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                while self.mode == HELD:
                    await asyncio.sleep(0.05)
                if self.mode == PARTITIONED:
                    break
                if self.latency:
                    await asyncio.sleep(self.latency)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            _abort(dst)


def _abort(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.transport.abort()
