"""The broker as a security boundary (issue 20, item 2), on a real Mosquitto that runs only the
files ``smsa-hub mosquitto-config`` writes, TLS only, with a CA and server certificate the test
makes with ``cryptography``; the real hub (``smsa-hub serve``) verifies the broker against that
CA (``SMSA_HUB_MQTT_CA_FILE``).

Gateways are added through the hub's API after the broker started, and the broker learns them
by re-reading its files on SIGHUP, without a restart. Gateway A's login cannot publish usage
for gateway B (the hub never receives it) nor read B's commands; a client that does not trust
the CA, a wrong password and an anonymous client are refused.
"""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from demo.api import HubApi
from demo.broker import mosquitto_path
from demo.procs import Processes
from demo.stack import GATEWAY, provision, start_hub
from demo.story import Member
from hub.ingest.transport.mqtt import BrokerUrl, make_client
from tests.support import free_port, mosquitto_config, run_mosquitto, stop, wait_for
from tests.tlscerts import make_ca, make_certificates

HUB_PASSWORD = "hub-" + "x" * 20
METER_B = Member("ivy", "Ivy", "m-ivy", 1, 3600, "", "")  # on gateway B (GATEWAY)


@dataclass
class Secured:
    port: int
    certs: Path
    api: HubApi
    hub_url: str
    passwords: dict[str, str]
    broker: subprocess.Popen[bytes]
    reload: Callable[[], None]  # the files from the hub's database again, then SIGHUP


def write_files(out: Path, db: str, port: int, certs: Path) -> None:
    hub = f"mqtts://smsa-hub:{HUB_PASSWORD}@127.0.0.1:{port}"
    conf = mosquitto_config(out, db, hub, "--certs", str(certs))
    text = conf.read_text()
    assert f"\nlistener {port}\n" in text and "allow_anonymous false\n" in text
    # the TLS listener of an mqtts:// hub URL binds every interface: narrowed for the test
    conf.write_text(text.replace(f"\nlistener {port}\n", f"\nlistener {port} 127.0.0.1\n"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is needed")
    tmp = tmp_path_factory.mktemp("secured")
    certs, work, conf_dir = tmp / "certs", tmp / "work", tmp / "conf"
    work.mkdir()
    make_certificates(certs)
    port = free_port()
    db = f"sqlite:///{work / 'hub.db'}"
    write_files(conf_dir, db, port, certs)  # the hub's own user only
    broker = run_mosquitto((conf_dir / "mosquitto.conf").read_text(), tmp, port)
    procs = Processes(tmp)
    api: HubApi | None = None
    try:
        hub_url, admin_key = start_hub(
            procs, work, f"mqtts://smsa-hub:{HUB_PASSWORD}@127.0.0.1:{port}",
            env={"SMSA_HUB_MQTT_CA_FILE": str(certs / "ca.crt")},
        )  # fmt: skip
        api = HubApi(hub_url, admin_key)
        gateway_b: dict[str, str] = {}
        provision(api, [METER_B], gateway_out=gateway_b)
        gateway_a = api.post("/gateways", {"id": "gw-a"})
        passwords = {"gw-a": gateway_a["mqtt_password"], GATEWAY: gateway_b["mqtt_password"]}

        def reload() -> None:
            write_files(conf_dir, db, port, certs)
            broker.send_signal(signal.SIGHUP)

        reload()
        yield Secured(port, certs, api, hub_url, passwords, broker, reload)
    finally:
        procs.stop_all()
        if api is not None:
            api.close()
        stop(broker)


@dataclass
class Peer:
    client: mqtt.Client
    connack: ReasonCode | None = None
    messages: list[str] | None = None


def connect(
    secured: Secured, user: str | None, password: str | None, *, ca: Path | None = None
) -> Peer:
    """An MQTT 5 client over TLS trusting ``ca`` (the test's CA by default); returns once the
    broker answered the CONNECT (a refused one stays refused)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         reconnect_on_failure=False)  # fmt: skip
    peer = Peer(client, messages=[])

    def on_connect(_c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object) -> None:
        peer.connack = rc

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        assert peer.messages is not None
        peer.messages.append(msg.topic)

    client.on_connect = on_connect
    client.on_message = on_message
    if user is not None:
        client.username_pw_set(user, password)
    client.tls_set(ca_certs=str(ca or secured.certs / "ca.crt"))
    client.connect("127.0.0.1", secured.port)
    client.loop_start()
    wait_for(lambda: peer.connack is not None, timeout=10)
    return peer


def close(peer: Peer) -> None:
    peer.client.disconnect()
    peer.client.loop_stop()


def publish(peer: Peer, topic: str, payload: bytes) -> ReasonCode:
    acks: dict[int, ReasonCode] = {}
    peer.client.on_publish = lambda _c, _u, mid, rc, _p: acks.__setitem__(mid, rc)
    info = peer.client.publish(topic, payload, qos=1)
    wait_for(lambda: info.mid in acks, timeout=10)
    return acks[info.mid]


def received(secured: Secured) -> int:
    """The hub's count of MQTT messages received (GET /metrics)."""
    text = httpx.get(f"{secured.hub_url}/metrics", timeout=5).text
    found = re.search(r"^smsa_ingest_received_total (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else -1


def test_a_gateway_cannot_publish_usage_for_another(secured: Secured) -> None:
    gw_a = connect(secured, "gw-a", secured.passwords["gw-a"])
    try:
        assert gw_a.connack is not None and not gw_a.connack.is_failure
        before = received(secured)
        assert before >= 0, "the hub's ingest runs over TLS"
        refused = publish(gw_a, f"smsa/v1/gw/{GATEWAY}/usage", b'{"forged": true}')
        assert refused.is_failure, refused  # 0x87 not authorized; Mosquitto then disconnects
    finally:
        close(gw_a)
    gw_a = connect(secured, "gw-a", secured.passwords["gw-a"])
    try:
        # A's own message after it: the hub receives that one and only that one (the broker
        # routed the forged one, had it let it through, before it acknowledged it).
        assert not publish(gw_a, "smsa/v1/gw/gw-a/usage", b'{"own": true}').is_failure
        wait_for(lambda: received(secured) >= before + 1, timeout=10)
        assert received(secured) == before + 1
    finally:
        close(gw_a)


def test_a_gateway_cannot_read_another_gateways_commands(secured: Secured) -> None:
    """The hub's rotate command to gateway B reaches B over TLS, never A (subscribed to B's
    topic and to every gateway's)."""
    gw_a = connect(secured, "gw-a", secured.passwords["gw-a"])
    gw_b = connect(secured, GATEWAY, secured.passwords[GATEWAY])
    try:
        for peer, topic in ((gw_a, f"smsa/v1/gw/{GATEWAY}/cmd"), (gw_a, "smsa/v1/gw/#"),
                            (gw_b, f"smsa/v1/gw/{GATEWAY}/cmd")):  # fmt: skip
            peer.client.subscribe(topic, qos=1)
        rotated = secured.api.post(f"/gateways/{GATEWAY}/rotate", {})
        assert rotated["command_id"]
        wait_for(lambda: f"smsa/v1/gw/{GATEWAY}/cmd" in (gw_b.messages or []), timeout=15)
        assert not [t for t in gw_a.messages or [] if t.endswith("/cmd")], gw_a.messages
    finally:
        close(gw_a)
        close(gw_b)


def test_wrong_password_and_anonymous_are_refused(secured: Secured) -> None:
    for user, password in (("gw-a", "not-the-password"), (None, None), ("nobody", "x")):
        peer = connect(secured, user, password)
        try:
            assert peer.connack is not None and peer.connack.is_failure, (user, peer.connack)
        finally:
            close(peer)


def test_clients_without_the_ca_refuse_the_broker(secured: Secured, tmp_path: Path) -> None:
    """A client trusting another CA (or the system's, as the hub without
    SMSA_HUB_MQTT_CA_FILE) does not finish the handshake: it verifies the server."""
    other = make_ca(tmp_path, name="someone-else")
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(secured, "gw-a", secured.passwords["gw-a"], ca=other.path)
    url = BrokerUrl.parse(f"mqtts://smsa-hub:{HUB_PASSWORD}@127.0.0.1:{secured.port}")
    for ca_file in (None, str(other.path)):
        hub_client = make_client(url, "smsa-probe", ca_file=ca_file)
        with pytest.raises(ssl.SSLCertVerificationError):
            hub_client.connect(url.host, url.port)
    # and with the CA, the hub's own client set-up verifies and connects (as a probe user)
    good = make_client(url, "smsa-probe", ca_file=str(secured.certs / "ca.crt"), v5=False)
    good.username_pw_set("gw-a", secured.passwords["gw-a"])
    assert good.connect(url.host, url.port) == mqtt.MQTT_ERR_SUCCESS
    good.disconnect()


def test_a_gateway_added_after_start_connects_after_sighup(secured: Secured) -> None:
    added = secured.api.post("/gateways", {"id": "gw-late"})
    early = connect(secured, "gw-late", added["mqtt_password"])
    close(early)
    assert early.connack is not None and early.connack.is_failure  # not in the file yet
    pid = secured.broker.pid
    secured.reload()
    late = wait_for(lambda: accepted(secured, "gw-late", added["mqtt_password"]), timeout=10)
    assert late is not None
    try:
        assert not publish(late, "smsa/v1/gw/gw-late/status", b'{"state": "online"}').is_failure
        assert secured.broker.poll() is None and secured.broker.pid == pid  # never restarted
    finally:
        close(late)


def accepted(secured: Secured, user: str, password: str) -> Peer | None:
    peer = connect(secured, user, password)
    if peer.connack is not None and not peer.connack.is_failure:
        return peer
    close(peer)
    return None
