"""``smsa-meter-sim``: simulated Modbus meters on a TCP port or a serial device."""

import asyncio
import logging
import signal
import sys

from firmware_sim.app import serve
from firmware_sim.config import parse_args
from firmware_sim.errors import ConfigError, SimError

PROG = "smsa-meter-sim"


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_args(argv)
    except SimError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pymodbus logs every client disconnect and its own deprecations; keep it to real errors.
    logging.getLogger("pymodbus").setLevel(
        logging.DEBUG if config.log_level == "DEBUG" else logging.CRITICAL
    )

    def ready(line: str) -> None:
        print(line, flush=True)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop, ready)

    try:
        asyncio.run(run())
    except ConfigError as exc:  # found while building the bus (a unit twice, a bad pairing)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SimError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
