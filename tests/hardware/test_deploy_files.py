"""Deployment files: the systemd units parse, and the broker configuration enforces the ACL
and binds client ids to user names.

The broker tests run twice, each time on a real Mosquitto: once on a config derived from
hardware/mosquitto/smsa.conf (only the listener addresses and the file paths are rewritten,
every other option is taken as shipped), once on the files `smsa-hub mosquitto-config` writes
from a hub database (only the TLS listener is narrowed to 127.0.0.1).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlmodel import Session

from demo.broker import mosquitto_path
from hub.db import make_engine, migrate, run_tx
from hub.gateways import mosquitto_hash
from hub.models import Gateway
from hub.mosquitto import GATEWAY_PUBLISHES, HUB_PUBLISHES
from protocol.topics import KINDS
from tests.support import free_port, mosquitto_config, run_mosquitto, stop, wait_for
from tests.tlscerts import make_certificates

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"
UNITS = HARDWARE / "systemd"
BROKER_CONF = HARDWARE / "mosquitto" / "smsa.conf"
BROKER_ACL = HARDWARE / "mosquitto" / "acl"
README = HARDWARE / "README.md"

PASSWORDS = {"gw-1": "pw-gw-1", "gw-2": "pw-gw-2", "smsa-hub": "pw-hub"}
PLAIN_PORT, TLS_PORT = "1883", "8883"  # the shipped listeners


# --- systemd units ----------------------------------------------------------------------


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists; repeated keys are kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def one(entries: list[tuple[str, str]], key: str) -> str:
    values = [value for name, value in entries if name == key]
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def every(entries: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in entries if name == key]


def test_agent_unit_runs_the_agent_under_a_watchdog() -> None:
    unit = unit_entries(UNITS / "smsa-agent.service")
    service = unit["Service"]
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert one(service, "WatchdogSec") == "30"
    assert one(service, "Restart") == "always"
    assert one(service, "RestartSec") == "5"
    assert one(service, "User") == "smsa"
    assert "dialout" in one(service, "SupplementaryGroups").split()
    assert one(service, "ExecStart") == (
        "/opt/smsa/.venv/bin/smsa-agent --config /etc/smsa/agent.toml"
    )
    assert one(service, "StateDirectory") == "smsa"
    assert one(service, "ProtectSystem") == "strict"
    assert "/var/lib/smsa" in one(service, "ReadWritePaths").split()
    assert one(service, "NoNewPrivileges") == "yes"
    assert one(service, "PrivateTmp") == "yes"
    allowed = every(service, "DeviceAllow")
    for device in ("char-ttyUSB rw", "char-ttyAMA rw"):
        assert device in allowed
    # PrivateDevices=yes would hide the serial ports from the agent.
    assert every(service, "PrivateDevices") in ([], ["no"])
    assert one(unit["Install"], "WantedBy") == "multi-user.target"


def test_hub_unit_serves_with_its_environment_file() -> None:
    unit = unit_entries(UNITS / "smsa-hub.service")
    service = unit["Service"]
    assert one(service, "Type") in ("simple", "exec")
    assert one(service, "User") == "smsa-hub"
    assert one(service, "ExecStart") == "/opt/smsa/.venv/bin/smsa-hub serve"
    assert one(service, "EnvironmentFile") == "/etc/smsa/hub.env"
    env_example = (UNITS / "hub.env.example").read_text()
    for name in ("SMSA_HUB_DB=", "SMSA_HUB_MQTT=", "SMSA_HUB_HTTP=", "SMSA_HUB_CURRENCY="):
        assert name in env_example


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser accepts every line (it warns, exit 0, on unknown keys: no output
    is allowed). It insists that ExecStart exists, so the copies point at a stub."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    copies = []
    for unit in sorted(UNITS.glob("*.service")):
        stub = stub_dir / unit.stem
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/smsa/.venv/bin/", f"{stub_dir}/"))
        copies.append(str(copy))
    assert len(copies) == 2
    result = subprocess.run(
        ["systemd-analyze", "verify", *copies],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


# --- the install guide ---------------------------------------------------------------


def fenced_blocks(text: str, language: str) -> list[str]:
    blocks: list[str] = []
    current: list[str] = []
    inside = False
    for line in text.splitlines():
        if not inside and line.strip() == f"```{language}":
            inside, current = True, []
        elif inside and line.strip() == "```":
            inside = False
            blocks.append("\n".join(current) + "\n")
        elif inside:
            current.append(line)
    return blocks


def test_readme_agent_config_passes_the_agents_loader(tmp_path: Path) -> None:
    from agent.settings import load  # noqa: PLC0415 (only this test needs the agent)

    (example,) = fenced_blocks(README.read_text(), "toml")
    path = tmp_path / "agent.toml"
    path.write_text(example)
    settings = load(path)
    assert settings.gateway_id == settings.mqtt.username
    assert {bus.transport for bus in settings.buses} == {"rtu"}


def test_readme_mbpoll_lines_set_line_and_addressing() -> None:
    """mbpoll defaults to 19200 baud, even parity, 1-based registers: every RTU example must
    override all three, and 32-bit reads must ask for high word first (-B)."""
    lines = [
        line
        for block in fenced_blocks(README.read_text(), "sh")
        for line in block.splitlines()
        if line.startswith("mbpoll ")
    ]
    assert len(lines) >= 5
    for line in lines:
        args = line.split("#")[0].split()
        assert "-0" in args, line
        if "rtu" in args:
            assert "-b" in args and "-P" in args, line
        if any(kind in args for kind in ("4:int", "3:float")):
            assert "-B" in args, line


# --- broker configuration ---------------------------------------------------------------


def config_options(text: str) -> list[tuple[str, str]]:
    """(option, value) pairs of a mosquitto.conf in file order, comments dropped."""
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def listener_blocks(options: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The options of each listener block, its own address under "listener"."""
    blocks: list[dict[str, str]] = []
    for key, value in options:
        if key == "listener":
            blocks.append({})
        if blocks:
            blocks[-1][key] = value
    return blocks


def test_shipped_broker_config_states_the_policy() -> None:
    options = config_options(BROKER_CONF.read_text())
    keys = [key for key, _ in options]
    first_listener = keys.index("listener")
    global_opts = dict(options[:first_listener])
    assert global_opts["allow_anonymous"] == "false"
    assert global_opts["persistence"] == "true"
    assert global_opts["password_file"] == "/etc/mosquitto/smsa/passwd"
    assert global_opts["acl_file"] == "/etc/mosquitto/smsa/acl"
    # The QoS 1 backlog: no count limit (default 1000 drops a restart's worth), a byte bound.
    assert global_opts["max_queued_messages"] == "0"
    assert int(global_opts["max_queued_bytes"]) >= 64 * 1024 * 1024
    # Per listener (set before the first listener it binds none of them, tried on 2.0.11).
    assert "use_username_as_clientid" not in global_opts
    blocks = listener_blocks(options)
    assert [block["listener"] for block in blocks] == [f"{PLAIN_PORT} 127.0.0.1", TLS_PORT]
    for block in blocks:
        assert block["use_username_as_clientid"] == "true", block
    for key in ("cafile", "certfile", "keyfile"):
        assert blocks[1][key].startswith("/etc/mosquitto/certs/")


def acl_rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def test_mosquitto_config_writes_the_shipped_configuration(tmp_path: Path) -> None:
    """``smsa-hub mosquitto-config`` for the hub user smsa-hub on 127.0.0.1:1883 with a TLS
    listener on 8883 writes the options and rules of the shipped, commented files."""
    out = tmp_path / "broker"
    conf = mosquitto_config(
        out,
        f"sqlite:///{tmp_path / 'hub.db'}",
        "mqtt://smsa-hub:secret@127.0.0.1:1883",
        "--tls-port", "8883", "--conf-dir", "/etc/mosquitto/smsa",
    )  # fmt: skip
    assert config_options(conf.read_text()) == config_options(BROKER_CONF.read_text())
    assert acl_rules((out / "acl").read_text()) == acl_rules(BROKER_ACL.read_text())


def test_every_topic_kind_has_one_direction_in_the_acl() -> None:
    """A new topic kind in protocol.topics must be given to the gateways or to the hub."""
    assert set(GATEWAY_PUBLISHES) | set(HUB_PUBLISHES) == set(KINDS)
    assert not set(GATEWAY_PUBLISHES) & set(HUB_PUBLISHES)


def derive_config(tmp: Path, port: int, tls_port: int | None) -> str:
    """smsa.conf with listeners on 127.0.0.1 test ports and every file path under ``tmp``."""
    paths = {
        "password_file": tmp / "smsa.passwd",
        "acl_file": tmp / "smsa.acl",
        "cafile": tmp / "ca.crt",
        "certfile": tmp / "server.crt",
        "keyfile": tmp / "server.key",
    }
    out: list[str] = []
    in_tls = False
    for key, value in config_options(BROKER_CONF.read_text()):
        if key == "listener":
            in_tls = value.split()[0] == TLS_PORT
            if in_tls and tls_port is None:
                continue
            out.append(f"listener {tls_port if in_tls else port} 127.0.0.1")
        elif in_tls and tls_port is None:
            continue
        elif key in paths:
            out.append(f"{key} {paths[key]}")
        else:
            out.append(f"{key} {value}")
    return "\n".join(out) + "\n"


def shipped_files(tmp: Path, port: int, tls_port: int | None) -> str:
    """hardware/mosquitto/smsa.conf and acl, with a password file from mosquitto_passwd."""
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.path.exists(passwd):
        pytest.skip("mosquitto_passwd is needed")
    shutil.copy(BROKER_ACL, tmp / "smsa.acl")
    for index, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run(
            [passwd, "-b", *create, str(tmp / "smsa.passwd"), user, password],
            check=True,
            capture_output=True,
            timeout=30,
        )
    return derive_config(tmp, port, tls_port)


def generated_files(tmp: Path, port: int, tls_port: int | None) -> str:
    """What ``smsa-hub mosquitto-config`` writes from a hub database holding gw-1 and gw-2
    (their hashes as POST /gateways stores them) for the hub URL smsa-hub:pw-hub@127.0.0.1.
    Only the TLS listener's address is narrowed to 127.0.0.1 for the test."""
    db = f"sqlite:///{tmp / 'hub.db'}"
    engine = make_engine(db)
    try:
        migrate(engine)

        def add(session: Session) -> None:
            for user in ("gw-1", "gw-2"):
                session.add(
                    Gateway(
                        id=user,
                        command_key="00" * 32,
                        mqtt_username=user,
                        mqtt_password_hash=mosquitto_hash(PASSWORDS[user]),
                    )
                )

        run_tx(engine, add)
    finally:
        engine.dispose()
    extra = ["--tls-port", str(tls_port), "--certs", str(tmp)] if tls_port else []
    conf = mosquitto_config(
        tmp / "broker", db, f"mqtt://smsa-hub:{PASSWORDS['smsa-hub']}@127.0.0.1:{port}", *extra
    )
    text = conf.read_text()
    if tls_port:
        assert f"\nlistener {tls_port}\n" in text
        text = text.replace(f"\nlistener {tls_port}\n", f"\nlistener {tls_port} 127.0.0.1\n")
    return text


@dataclass
class SmsaBroker:
    port: int
    tls_port: int
    tmp: Path


@pytest.fixture(scope="module", params=["shipped", "generated"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SmsaBroker]:
    """Mosquitto on the shipped files, then on the files smsa-hub mosquitto-config writes."""
    if mosquitto_path() is None:
        pytest.skip("mosquitto is needed")
    tmp = tmp_path_factory.mktemp(f"broker-{request.param}")
    make_certificates(tmp)
    tls_port = free_port()
    port = free_port()
    files = shipped_files if request.param == "shipped" else generated_files
    proc = run_mosquitto(files(tmp, port, tls_port), tmp, port)
    try:
        yield SmsaBroker(port, tls_port, tmp)
    finally:
        stop(proc)


@dataclass
class Peer:
    """One paho 2.x MQTT v5 client whose callbacks only record what the broker said."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    # Why the broker closed this connection (e.g. 0x8E "session taken over"), in order.
    disconnects: list[ReasonCode] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def topics(self) -> list[str]:
        with self.lock:
            return [topic for topic, _ in self.messages]

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [payload for name, payload in self.messages if name == topic]

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks, timeout=5)
        return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        wait_for(lambda: mid in self.subacks, timeout=5)
        return self.subacks[mid][0]


class Peers:
    """Makes connected peers and disconnects every one of them at the end of the test."""

    def __init__(self, broker: SmsaBroker) -> None:
        self.broker = broker
        self.made: list[Peer] = []

    def connect(
        self,
        username: str | None,
        password: str | None = None,
        *,
        client_id: str = "",
        session_expiry: int = 0,
        tls: bool = False,
        will: str | None = None,
    ) -> Peer:
        # A refused or closed connection stays closed: the tests look at why, not retry.
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        peer = Peer(client)

        def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
            peer.connack = rc

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            with peer.lock:
                peer.messages.append((msg.topic, bytes(msg.payload)))

        def on_publish(_c: mqtt.Client, _u: object, mid: int, rc: ReasonCode, _p: object) -> None:
            peer.pubacks[mid] = rc

        def on_subscribe(
            _c: mqtt.Client, _u: object, mid: int, rcs: list[ReasonCode], _p: object
        ) -> None:
            peer.subacks[mid] = rcs

        def on_disconnect(
            _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
        ) -> None:
            peer.disconnects.append(rc)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_message = on_message
        client.on_publish = on_publish
        client.on_subscribe = on_subscribe
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will, b'{"state": "offline"}', qos=1)
        port = self.broker.port
        if tls:
            client.tls_set(ca_certs=str(self.broker.tmp / "ca.crt"))
            port = self.broker.tls_port
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry
        self.made.append(peer)
        client.connect("127.0.0.1", port, clean_start=session_expiry == 0, properties=properties)
        client.loop_start()
        wait_for(lambda: peer.connack is not None, timeout=5)
        return peer

    def close(self, peer: Peer) -> None:
        peer.client.disconnect()
        peer.client.loop_stop()
        self.made.remove(peer)

    def drop(self, peer: Peer) -> None:
        """Lose the connection without a DISCONNECT, as a gateway that loses power does."""
        sock = peer.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)  # paho's loop sees the connection lost and exits
        peer.client.loop_stop()
        self.made.remove(peer)

    def close_all(self) -> None:
        for peer in list(self.made):
            self.close(peer)


@pytest.fixture
def peers(broker: SmsaBroker) -> Iterator[Peers]:
    made = Peers(broker)
    try:
        yield made
    finally:
        made.close_all()


def login(
    peers: Peers,
    user: str,
    *,
    client_id: str = "",
    session_expiry: int = 0,
    tls: bool = False,
    will: str | None = None,
) -> Peer:
    peer = peers.connect(
        user,
        PASSWORDS[user],
        client_id=client_id,
        session_expiry=session_expiry,
        tls=tls,
        will=will,
    )
    assert peer.connack is not None and not peer.connack.is_failure, peer.connack
    return peer


def hub_listening(peers: Peers) -> Peer:
    hub = login(peers, "smsa-hub")
    assert not hub.subscribe("smsa/v1/gw/+/#").is_failure
    return hub


@pytest.mark.parametrize(
    ("username", "password"),
    [(None, None), ("gw-1", "wrong"), ("stranger", "pw-gw-1")],
    ids=["anonymous", "bad-password", "unknown-user"],
)
def test_unauthenticated_clients_are_refused(
    peers: Peers, username: str | None, password: str | None
) -> None:
    peer = peers.connect(username, password)
    assert peer.connack is not None and peer.connack.is_failure


def test_gateway_usage_reaches_the_hub(peers: Peers) -> None:
    hub = hub_listening(peers)
    gw1 = login(peers, "gw-1")
    for kind in ("status", "usage", "events"):
        topic = f"smsa/v1/gw/gw-1/{kind}"
        assert not gw1.publish(topic, b'{"v": 1}').is_failure
        wait_for(partial(hub.payloads, topic), timeout=5)


@pytest.mark.parametrize(
    "topic",
    [
        "smsa/v1/gw/gw-2/usage",
        "smsa/v1/gw/gw-2/status",
        "smsa/v1/gw/gw-2/events",
        "smsa/v1/gw/gw-1/cmd",
        "smsa/v1/gw/gw-1/receipt",
    ],
)
def test_gateway_cannot_speak_for_another_gateway_or_the_hub(peers: Peers, topic: str) -> None:
    hub = hub_listening(peers)
    gw1 = login(peers, "gw-1")
    # MQTT v5: PUBACK 0x87 "not authorised". Mosquitto 2.0 then also closes the connection.
    assert gw1.publish(topic, b"forged").is_failure
    # The broker routes a publish to subscribers before it acknowledges it, and sends a
    # subscriber its messages in that order: once a marker published after the PUBACK has
    # arrived, a forged message that got through would have arrived before it.
    gw2 = login(peers, "gw-2")
    assert not gw2.publish("smsa/v1/gw/gw-2/usage", b"marker").is_failure
    wait_for(lambda: hub.payloads("smsa/v1/gw/gw-2/usage") == [b"marker"], timeout=5)
    assert hub.topics() == ["smsa/v1/gw/gw-2/usage"]


def test_last_will_only_on_the_gateways_own_status(peers: Peers) -> None:
    hub = hub_listening(peers)
    forged = peers.connect("gw-1", PASSWORDS["gw-1"], will="smsa/v1/gw/gw-2/status")
    peers.drop(forged)  # the broker may accept the CONNECT; it must not publish that will
    honest = login(peers, "gw-1", will="smsa/v1/gw/gw-1/status")
    peers.drop(honest)
    wait_for(partial(hub.payloads, "smsa/v1/gw/gw-1/status"), timeout=5)
    assert hub.topics() == ["smsa/v1/gw/gw-1/status"]


@pytest.mark.parametrize("kind", HUB_PUBLISHES)
def test_hub_messages_reach_only_their_gateway(peers: Peers, kind: str) -> None:
    """Commands and receipts: the hub may send them to any gateway, a gateway reads only its
    own, even with a wildcard subscription."""
    hub = login(peers, "smsa-hub")
    gw1 = login(peers, "gw-1")
    gw2 = login(peers, "gw-2")
    assert not gw1.subscribe(f"smsa/v1/gw/gw-1/{kind}").is_failure
    gw1.subscribe(f"smsa/v1/gw/gw-2/{kind}")  # refused or silently useless: nothing may arrive
    gw1.subscribe(f"smsa/v1/gw/+/{kind}")
    assert not gw2.subscribe(f"smsa/v1/gw/gw-2/{kind}").is_failure
    assert not hub.publish(f"smsa/v1/gw/gw-2/{kind}", b"for gw-2").is_failure
    assert not hub.publish(f"smsa/v1/gw/gw-1/{kind}", b"for gw-1").is_failure
    wait_for(lambda: gw2.payloads(f"smsa/v1/gw/gw-2/{kind}") == [b"for gw-2"], timeout=5)
    wait_for(lambda: b"for gw-1" in gw1.payloads(f"smsa/v1/gw/gw-1/{kind}"), timeout=5)
    assert set(gw1.topics()) == {f"smsa/v1/gw/gw-1/{kind}"}


def test_hub_session_keeps_more_than_the_default_queue(peers: Peers) -> None:
    """Mosquitto's default max_queued_messages (1000) would drop the rest of this backlog."""
    backlog = 1500
    hub = login(peers, "smsa-hub", client_id="smsa-hub-queue-test", session_expiry=600)
    assert not hub.subscribe("smsa/v1/gw/+/usage").is_failure
    peers.close(hub)  # the hub is down; its persistent session stays on the broker
    gw1 = login(peers, "gw-1")
    infos = [
        gw1.client.publish("smsa/v1/gw/gw-1/usage", b"%d" % seq, qos=1) for seq in range(backlog)
    ]
    wait_for(lambda: all(info.mid in gw1.pubacks for info in infos), timeout=20)
    hub = login(peers, "smsa-hub", client_id="smsa-hub-queue-test", session_expiry=600)
    wait_for(lambda: len(hub.payloads("smsa/v1/gw/gw-1/usage")) >= backlog, timeout=20)
    assert hub.payloads("smsa/v1/gw/gw-1/usage") == [b"%d" % seq for seq in range(backlog)]


def test_gateway_over_tls(peers: Peers, broker: SmsaBroker) -> None:
    hub = hub_listening(peers)
    gw1 = login(peers, "gw-1", tls=True)
    assert not gw1.publish("smsa/v1/gw/gw-1/usage", b"over tls").is_failure
    wait_for(lambda: hub.payloads("smsa/v1/gw/gw-1/usage") == [b"over tls"], timeout=5)


# --- client ids are bound to user names (issue 14, item 2) -------------------------------
# The real hub connects with client id "smsa-hub" and a persistent session (MQTT 5 session
# expiry), the real agent with "smsa-gw-<id>" and a persistent session: the peers below do the
# same. A gateway's login that asks for someone else's client id must get a session of its own.

HUB_SESSION = 600  # seconds of MQTT 5 session expiry: the hub's and agent's persistent sessions


def hub_session(peers: Peers) -> Peer:
    """The hub as hub.ingest connects: client id smsa-hub, persistent session."""
    return login(peers, "smsa-hub", client_id="smsa-hub", session_expiry=HUB_SESSION)


def agent_session(peers: Peers, gateway: str) -> Peer:
    """A gateway as agent.uplink connects: client id smsa-gw-<id>, persistent session."""
    return login(peers, gateway, client_id=f"smsa-gw-{gateway}", session_expiry=HUB_SESSION)


def eventually(check: Callable[[], object], timeout: float = 5.0) -> bool:
    """Whether ``check`` became true within ``timeout`` (the test then says what was wrong)."""
    try:
        wait_for(check, timeout=timeout)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize(
    ("client_id", "tls"),
    [("smsa-hub", False), ("smsa-gw-gw-2", False), ("smsa-hub", True)],
    ids=["hub-id", "gateway-id", "hub-id-over-tls"],
)
def test_a_gateway_cannot_disconnect_the_hub_or_another_gateway(
    peers: Peers, broker: SmsaBroker, client_id: str, tls: bool
) -> None:
    hub = hub_session(peers)
    assert not hub.subscribe("smsa/v1/gw/+/usage").is_failure
    gw2 = agent_session(peers, "gw-2")
    assert not gw2.subscribe("smsa/v1/gw/gw-2/cmd").is_failure
    for _ in range(3):  # gw-1's login asks for the hub's or gw-2's client id, again and again
        peers.close(login(peers, "gw-1", client_id=client_id, tls=tls))
    gw2.client.publish("smsa/v1/gw/gw-2/usage", b"still here", qos=1)
    hub.client.publish("smsa/v1/gw/gw-2/cmd", b"for gw-2", qos=1)

    def delivered() -> bool:
        return hub.payloads("smsa/v1/gw/gw-2/usage") == [b"still here"] and gw2.payloads(
            "smsa/v1/gw/gw-2/cmd"
        ) == [b"for gw-2"]

    eventually(lambda: delivered() or hub.disconnects or gw2.disconnects)
    assert hub.disconnects == [], f"the hub was disconnected: {hub.disconnects}"
    assert gw2.disconnects == [], f"gw-2 was disconnected: {gw2.disconnects}"
    assert delivered()


def test_a_clean_start_with_the_hubs_client_id_keeps_the_hubs_queue(peers: Peers) -> None:
    hub = hub_session(peers)
    assert not hub.subscribe("smsa/v1/gw/+/usage").is_failure
    peers.close(hub)  # the hub is down; its session queues for it
    peers.close(login(peers, "gw-1", client_id="smsa-hub"))  # clean start, no session expiry
    gw2 = login(peers, "gw-2")
    sent = [b"%d" % seq for seq in range(20)]
    for payload in sent:
        assert not gw2.publish("smsa/v1/gw/gw-2/usage", payload).is_failure
    hub = hub_session(peers)
    eventually(lambda: len(hub.payloads("smsa/v1/gw/gw-2/usage")) >= len(sent))
    got = hub.payloads("smsa/v1/gw/gw-2/usage")
    assert got == sent, f"the hub got {len(got)} of {len(sent)} queued messages"


@pytest.mark.parametrize("clean_start", [True, False], ids=["clean-start", "resume"])
def test_a_gateway_cannot_take_over_another_gateways_queued_command(
    peers: Peers, clean_start: bool
) -> None:
    gw2 = agent_session(peers, "gw-2")
    assert not gw2.subscribe("smsa/v1/gw/gw-2/cmd").is_failure
    peers.close(gw2)  # gw-2 is offline; the broker queues its command
    hub = login(peers, "smsa-hub")
    assert not hub.publish("smsa/v1/gw/gw-2/cmd", b"queued for gw-2").is_failure
    intruder = login(
        peers, "gw-1", client_id="smsa-gw-gw-2", session_expiry=0 if clean_start else HUB_SESSION
    )
    peers.close(intruder)
    gw2 = agent_session(peers, "gw-2")
    eventually(lambda: gw2.payloads("smsa/v1/gw/gw-2/cmd"))
    assert intruder.topics() == [], "gw-1 received gw-2's command"
    assert gw2.payloads("smsa/v1/gw/gw-2/cmd") == [b"queued for gw-2"], "gw-2's command was lost"


def test_sessions_are_keyed_by_user_name(peers: Peers) -> None:
    """With use_username_as_clientid the broker ignores the client id a login asks for: the
    hub's queue is found again under its user name whatever id it connects with."""
    hub = login(peers, "smsa-hub", client_id="first-id", session_expiry=HUB_SESSION)
    assert not hub.subscribe("smsa/v1/gw/+/usage").is_failure
    peers.close(hub)
    gw1 = login(peers, "gw-1")
    assert not gw1.publish("smsa/v1/gw/gw-1/usage", b"queued").is_failure
    hub = login(peers, "smsa-hub", client_id="second-id", session_expiry=HUB_SESSION)
    eventually(lambda: hub.payloads("smsa/v1/gw/gw-1/usage"))
    assert hub.payloads("smsa/v1/gw/gw-1/usage") == [b"queued"]
