"""``smsa-agent --config agent.toml [run|status|check|token METER CODE]``: the edge agent, its
status, or a token handed to the running agent (``agent.local_api``).

Exit codes: 0 clean stop (``token``: the credit is applied, one line on stdout), 2 bad
configuration or arguments (one line on stderr naming the file and the key), 1 a fatal runtime
error (one line; ``token``: the agent could not be reached), 3 ``status`` without a status file,
4 ``token`` refused (the reason on stderr: used, too_old, invalid, cancelled, locked_out).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from agent.errors import AgentError, ConfigError
from agent.settings import AgentSettings, load
from agent.status import StatusUnavailable, read

if TYPE_CHECKING:
    from agent.metrics import MetricsServer

log = logging.getLogger("agent")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"smsa-agent: {message}\n")
        raise SystemExit(2)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="smsa-agent", description="SMSA edge agent (gateway)")
    p.add_argument("--config", required=True, type=Path, help="agent TOML file")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", default="text", choices=["text", "json"])
    p.add_argument("command", nargs="?", default="run", choices=["run", "status", "check", "token"])
    p.add_argument("args", nargs="*", help="token: METER CODE")
    return p


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # the agent logs each bus failure itself (once at ERROR); pymodbus would repeat each one
    logging.getLogger("pymodbus").setLevel(logging.DEBUG if level == "DEBUG" else logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"smsa-agent: {exc}\n")
        return 2
    if args.command == "token":
        if len(args.args) != 2:
            sys.stderr.write("smsa-agent: token takes METER CODE\n")
            return 2
        return hand_token(settings, args.args[0], args.args[1])
    if args.args:
        sys.stderr.write(f"smsa-agent: {args.command} takes no arguments\n")
        return 2
    if args.command == "status":
        return _status(settings)
    if args.command == "check":
        sys.stdout.write(f"{args.config}: ok ({len(settings.meters)} meters)\n")
        return 0
    setup_logging(args.log_level, args.log_format)
    try:
        return run(settings)
    except AgentError as exc:
        log.error("fatal: %s", exc)
        sys.stderr.write(f"smsa-agent: {exc}\n")
        return 1


def _status(settings: AgentSettings) -> int:
    try:
        data = read(settings.status_path)
    except StatusUnavailable as exc:
        sys.stderr.write(f"smsa-agent: {exc}\n")
        return 3
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


def hand_token(settings: AgentSettings, meter: str, code: str) -> int:
    """POST the token to the running agent's local endpoint; one line either way."""
    import urllib.error  # noqa: PLC0415 (only this command needs it)
    import urllib.request  # noqa: PLC0415

    host, port = settings.tokens.host, settings.tokens.port
    request = urllib.request.Request(
        f"http://{host}:{port}/tokens",
        data=json.dumps({"meter": meter, "code": code}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            answer = {"reason": f"HTTP {exc.code}"}
        sys.stderr.write(f"smsa-agent: token refused: {answer.get('reason')}\n")
        return 4
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"smsa-agent: no agent answering at {host}:{port}: {exc}\n")
        return 1
    balance = answer.get("balance")
    tail = "" if balance is None else f", balance {balance}"
    sys.stdout.write(f"{meter}: token applied, +{answer['amount']} minor units{tail}\n")
    return 0


def run(settings: AgentSettings) -> int:
    """Wire the agent and run it until SIGTERM or SIGINT."""
    # imported here so that `status` and a bad config answer without loading paho and pymodbus
    from agent.commands import CommandGate  # noqa: PLC0415
    from agent.credit import CreditBook  # noqa: PLC0415
    from agent.engine import Engine  # noqa: PLC0415
    from agent.local_api import LocalApi  # noqa: PLC0415
    from agent.store import AgentStore  # noqa: PLC0415
    from agent.tokens import TokenDesk  # noqa: PLC0415
    from agent.uplink.client import Uplink  # noqa: PLC0415
    from agent.uplink.outbox import Outbox  # noqa: PLC0415
    from protocol.tokens import Lockout  # noqa: PLC0415

    mqtt = settings.mqtt
    # one connection to the agent's SQLite file, shared by everything that keeps state in it
    store = AgentStore(settings.storage.path)
    outbox = Outbox(store, settings.storage.max_outbox_rows, resend_after_s=mqtt.resend_after_s)
    credit = CreditBook(store)
    gate = CommandGate(settings.security.command_key, store, epoch=outbox.epoch,
                       began=outbox.began, mqtt_password=mqtt.password)  # fmt: skip
    tokens = settings.tokens
    lockout = Lockout(free=tokens.lockout_after, base_s=tokens.lockout_base_s,
                      max_s=tokens.lockout_max_s)  # fmt: skip
    desk = TokenDesk(store, gate.credentials.honoured, credit, outbox, lockout)
    engine = Engine(settings, store, outbox, credit, gate, tokens=desk)
    uplink = Uplink(
        settings.gateway_id,
        mqtt.url,
        mqtt.username,
        mqtt.password,
        outbox,
        engine.on_command,
        engine.uplink_status,
        command_key=settings.security.command_key,
        credentials=gate.credentials,
        tls_ca=str(mqtt.ca_file) if mqtt.ca_file else None,
        keepalive_s=mqtt.keepalive_s,
    )
    engine.uplink = uplink
    metrics = _metrics_server(settings)

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        engine.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    local: LocalApi | None = None
    try:
        local = LocalApi(tokens.host, tokens.port, engine)
    except OSError as exc:  # metering and credit matter more than the keypad: run without it
        log.error("tokens: cannot listen on %s:%d (%s); no tokens can be typed",
                  tokens.host, tokens.port, exc)  # fmt: skip
    uplink.start()
    try:
        engine.run()
    finally:
        if local is not None:
            local.stop()
        uplink.stop()
        store.close()
        if metrics is not None:
            metrics.stop()
    log.info("agent stopped")
    return 0


def _metrics_server(settings: AgentSettings) -> MetricsServer | None:
    """The opt-in ``/metrics`` endpoint (``[metrics] port``)."""
    port = settings.metrics.port
    if port is None:
        return None
    from agent.metrics import MetricsServer  # noqa: PLC0415 (as the other parts of run())

    try:
        return MetricsServer(settings.metrics.host, port, settings.status_path)
    except OSError as exc:
        raise AgentError(
            f"metrics: cannot listen on {settings.metrics.host}:{port}: {exc}"
        ) from exc


if __name__ == "__main__":
    raise SystemExit(main())
