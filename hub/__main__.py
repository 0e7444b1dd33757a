"""``smsa-hub``: serve (MQTT ingest + HTTP API + scheduler), create-key, revoke-key,
mosquitto-config, mqtt-passwd, insights (a CSV per customer). Bad arguments print one line
on stderr and exit 2; a refused action exits 1."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError
from sqlmodel import Session, col, select

from hub import keys, mosquitto
from hub.app import build_app
from hub.audit import record_created
from hub.compose import IngestOptions, compose
from hub.db import make_engine, migrate, run_tx, session_scope
from hub.errors import HubError, InvalidInputError
from hub.gateways import mosquitto_hash
from hub.ingest.transport.mqtt import BrokerUrl
from hub.insights.report import write_reports
from hub.insights.service import InsightsSettings
from hub.models import Gateway, utcnow
from hub.services.keys import revoke
from hub.settings import HubSettings

log = logging.getLogger("hub")

EXIT_USAGE = 2
EXIT_FAILED = 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"smsa-hub: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="smsa-hub", description="SMSA hub: settlement, API, ingest")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run MQTT ingest, the HTTP API and the scheduler")
    serve.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    serve.add_argument("--mqtt", help='broker URL, "" for none (SMSA_HUB_MQTT)')
    serve.add_argument("--http", help="HOST:PORT to listen on (SMSA_HUB_HTTP)")
    serve.add_argument("--currency", help="ISO 4217 code (SMSA_HUB_CURRENCY)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING (SMSA_HUB_LOG_LEVEL)")
    serve.add_argument(
        "--ingest-group",
        metavar="NAME",
        help="settle as one of several processes on PostgreSQL (SMSA_HUB_INGEST_GROUP)",
    )
    key = sub.add_parser("create-key", help="print a new API key on stdout")
    key.add_argument("--role", required=True,
                     choices=["admin", "operator", "customer", "provider", "billpay"])  # fmt: skip
    key.add_argument("--account", help="the account a customer key may use")
    key.add_argument("--provider", help="the provider a provider key acts for")
    key.add_argument("--network", help="the bill-payment network a billpay key acts for")
    key.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    revoke = sub.add_parser("revoke-key", help="revoke a key by its id or the key itself")
    revoke.add_argument("key", metavar="KEY_ID|KEY")
    revoke.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    broker = sub.add_parser(
        "mosquitto-config", help="write the broker's passwd, acl and mosquitto.conf into a folder"
    )
    broker.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    broker.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    broker.add_argument(
        "--mqtt", help="the hub's broker URL with its user:password@ (SMSA_HUB_MQTT)"
    )
    broker.add_argument(
        "--tls-port", type=int, metavar="PORT", help="also a TLS listener for gateways on PORT"
    )
    broker.add_argument(
        "--certs",
        default=mosquitto.DEFAULT_CERTS,
        metavar="DIR",
        help="folder of ca.crt, server.crt, server.key for TLS listeners",
    )
    broker.add_argument(
        "--conf-dir",
        metavar="DIR",
        help="where passwd and acl will be installed, as mosquitto.conf names them "
        "(default: --out)",
    )
    passwd = sub.add_parser("mqtt-passwd", help="print a Mosquitto password file of gateways")
    passwd.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    insights = sub.add_parser("insights", help="write a CSV of insights per customer")
    insights.add_argument("--period", required=True, help="YYYY-MM")
    insights.add_argument("--out", default=".", help="directory for the CSV files (default .)")
    insights.add_argument("--db", help="database URL (SMSA_HUB_DB)")
    return parser


def _settings(args: argparse.Namespace) -> HubSettings:
    overrides: dict[str, Any] = {}
    for name in ("db", "mqtt", "http", "currency", "log_level", "ingest_group"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return HubSettings(**overrides)


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    return f"{where}: {err['msg']}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"smsa-hub: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    if args.command != "serve":  # one-shot commands: stderr carries only what went wrong
        level = max(level, logging.WARNING)
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "serve":
            return serve(settings)
        if args.command == "create-key":
            account = f"provider:{args.provider}" if args.provider else args.account
            if args.network:
                account = f"billpay:{args.network}"
            return create_key(settings, args.role, account)
        if args.command == "revoke-key":
            return revoke_key(settings, args.key)
        if args.command == "mosquitto-config":
            return mosquitto_config(settings, args)
        if args.command == "mqtt-passwd":
            return mqtt_passwd(settings)
        if args.command == "insights":
            return insights_report(settings, args.period, Path(args.out))
    except HubError as exc:
        print(f"smsa-hub: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 0
    raise AssertionError(args.command)


def create_key(settings: HubSettings, role: str, account: str | None) -> int:
    engine = make_engine(settings.db)
    try:
        migrate(engine)

        def work(session: Session) -> tuple[int, str]:
            made = keys.create_key(session, role, account, currency=settings.currency)
            record_created(session, "api_key", str(made[0]), key_id=None,
                           fields={"role": role, "account": account})  # fmt: skip
            return made

        key_id, key = run_tx(engine, work)
    finally:
        engine.dispose()
    log.info("created %s key id %d", role, key_id)  # stdout carries the key and nothing else
    print(key)
    return 0


def insights_report(settings: HubSettings, period: str, out: Path) -> int:
    engine = make_engine(settings.db)
    try:
        migrate(engine)
        written = write_reports(engine, period, out, utcnow(), InsightsSettings())
    finally:
        engine.dispose()
    print(f"wrote {len(written)} reports to {out}")
    return 0


def revoke_key(settings: HubSettings, key_or_id: str) -> int:
    engine = make_engine(settings.db)
    try:
        migrate(engine)
        key_id = run_tx(engine, lambda s: revoke(s, key_or_id, by=None))
    finally:
        engine.dispose()
    print(f"revoked key {key_id}")
    return 0


def mosquitto_config(settings: HubSettings, args: argparse.Namespace) -> int:
    """DIR/passwd, DIR/acl, DIR/mosquitto.conf (see hub.mosquitto)."""
    try:
        url = BrokerUrl.parse(settings.mqtt)
    except InvalidInputError as exc:
        print(f"smsa-hub: --{exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if url.username is None or url.password is None:
        print(
            "smsa-hub: --mqtt: give the hub's broker login, mqtt://USER:PASSWORD@HOST:PORT",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not mosquitto.valid_user(url.username):
        print(
            f"smsa-hub: --mqtt: user name {url.username!r} may use only A-Z a-z 0-9 . _ -",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.tls_port is not None and not 0 < args.tls_port < 65536:
        print(f"smsa-hub: --tls-port: {args.tls_port} is not a port", file=sys.stderr)
        return EXIT_USAGE
    if args.conf_dir is not None and not args.conf_dir.startswith("/"):
        print(f"smsa-hub: --conf-dir: {args.conf_dir!r} is not an absolute path", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    conf_dir = args.conf_dir or str(out.resolve())
    gateways = _gateway_logins(settings)
    usable = [(user, digest) for user, digest in gateways if digest.startswith(("$6$", "$7$"))]
    if len(usable) < len(gateways):
        unusable = sorted({user for user, _ in gateways} - {user for user, _ in usable})
        print(
            f"smsa-hub: warning: no Mosquitto password hash, left out of passwd: "
            f"{', '.join(unusable)}",
            file=sys.stderr,
        )
    listeners = mosquitto.listeners_for(url.host, url.port, url.tls, args.tls_port)
    try:
        files = {
            "passwd": mosquitto.password_file((url.username, mosquitto_hash(url.password)), usable),
            "acl": mosquitto.acl_file(url.username),
            "mosquitto.conf": mosquitto.config_file(conf_dir, listeners, args.certs),
        }
        mosquitto.write_files(out, files)
    except mosquitto.BrokerConfigError as exc:
        print(f"smsa-hub: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"smsa-hub: --out: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def mqtt_passwd(settings: HubSettings) -> int:
    """Password-file lines of the gateways only (mosquitto-config writes the whole set)."""
    for user, digest in _gateway_logins(settings):
        print(f"{user}:{digest}")
    return 0


def _gateway_logins(settings: HubSettings) -> list[tuple[str, str]]:
    """(MQTT user name, password hash) of every gateway, by gateway id."""
    engine = make_engine(settings.db)
    try:
        migrate(engine)
        with session_scope(engine, write=False) as session:
            rows = session.exec(select(Gateway).order_by(col(Gateway.id))).all()
            return [(gw.mqtt_username, gw.mqtt_password_hash) for gw in rows]
    finally:
        engine.dispose()


def serve(settings: HubSettings) -> int:
    engine = make_engine(settings.db)
    migrate(engine)
    if not settings.mqtt:
        log.warning("no MQTT URL: ingest and commands are off")
    ingest = IngestOptions() if settings.mqtt else None
    app = build_app(compose(settings, engine, ingest=ingest, scheduler=settings.scheduler))
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        timeout_graceful_shutdown=3,
        access_log=False,
    )
    server = _Server(config, app.state.hub.stopping)
    try:
        server.run()
    finally:
        engine.dispose()
    return 0 if server.started else EXIT_FAILED


class _Server(uvicorn.Server):
    """uvicorn.Server that also ends open event streams when asked to exit."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self._stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._stopping.set()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
