"""Uplink test helpers: records, events, and a real paho subscriber recording what arrives."""

import getpass
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.messages import Event, UsageRecord
from protocol.receipts import build_receipt, verify_receipt
from tests.support import port_open, stop, wait_for

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
KEY = "ab" * 32  # the test gateways' command key, which also signs the hub's receipts


def record(meter: str, seq: int, wh: int = 10, shares: dict[str, int] | None = None) -> UsageRecord:
    """The ``seq``-th 10-second interval of ``meter``, ``wh`` Wh each, registers contiguous."""
    start = T0 + timedelta(seconds=10 * (seq - 1))
    return UsageRecord(
        meter=meter,
        seq=seq,
        start=start,
        end=start + timedelta(seconds=10),
        import_start=1000 + wh * (seq - 1),
        import_end=1000 + wh * seq,
        shares=shares if shares is not None else {"gen": seq % 3, "dist": 1},
        tariff="flat",
        tariff_version=1,
    )


def event(n: int, meter: str | None = "m1") -> Event:
    return Event(id=f"ev-{n}", kind="relay", at=T0 + timedelta(seconds=n), meter=meter)


def confirm_rows(outbox: Any, rows: list[Any], gateway: str = "gw-1") -> int:
    """Have ``outbox`` confirm ``rows`` (sent) through a signed receipt, as the hub does."""
    usage: dict[str, list[int]] = {}
    events: list[str] = []
    for row in rows:
        body = json.loads(row.body)
        if row.kind == "usage":
            usage.setdefault(body["meter"], []).append(body["seq"])
        else:
            events.append(body["id"])
    receipt = build_receipt(KEY, gateway, at=datetime.now(UTC), epoch=outbox.epoch,
                            usage=usage, events=events)  # fmt: skip
    return int(outbox.confirm(verify_receipt(json.dumps(receipt).encode(), KEY, gateway)))


@dataclass
class Broker:
    """A real Mosquitto on 127.0.0.1 whose persistence works, so a restart keeps sessions.

    Like ``tests.conftest.Broker`` but with ``user`` set to the current user: run as root,
    Mosquitto otherwise drops to user ``mosquitto``, cannot write its store in the root-only
    test directory, and silently loses every session and queued message on restart.
    """

    host: str
    port: int
    tmp_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: str = ""
    scheme: str = "mqtt"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self) -> None:
        conf = self.tmp_path / f"mosquitto-{self.port}.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.tmp_path}/\n"
            f"user {getpass.getuser()}\n"
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            "log_type error\n" + self.extra
        )
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
        self.proc = proc
        wait_for(lambda: port_open(self.port) or proc.poll() is not None, timeout=10)
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()


class Subscriber:
    """A persistent-session paho subscriber to every SMSA topic, collecting what arrives.

    With ``receipt_key`` it also answers each usage and events message the way the hub does
    once it has settled them: a receipt signed with that key (``protocol.receipts``), so the
    uplink's outbox empties without a hub.
    """

    def __init__(
        self,
        broker: Broker,
        client_id: str = "test-sub",
        *,
        receipt_key: str | None = None,
        v5: bool = True,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.receipt_key = receipt_key
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.reconnect_delay_set(1, 1)
        if v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            self.client.connect(broker.host, broker.port, clean_start=False, properties=props)
        else:
            self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        wait_for(self._connected.is_set, timeout=10)

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe("smsa/v1/gw/#", qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
        *_, gateway, kind = msg.topic.split("/")
        if self.receipt_key is None or kind not in ("usage", "events"):
            return
        body = json.loads(msg.payload)
        usage: dict[str, list[int]] = {}
        for rec in body.get("records", ()):
            usage.setdefault(rec["meter"], []).append(rec["seq"])
        epochs = {rec.get("epoch") for rec in body.get("records", ())} or {None}
        receipt = build_receipt(
            self.receipt_key,
            gateway,
            at=datetime.now(UTC),
            epoch=epochs.pop(),
            usage=usage,
            events=[e["id"] for e in body.get("events", ())],
        )
        client.publish(f"smsa/v1/gw/{gateway}/receipt", json.dumps(receipt), qos=1)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def payloads(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith("/" + kind)]

    def records(self) -> list[dict[str, Any]]:
        return [r for p in self.payloads("usage") for r in p["records"]]

    def events(self) -> list[dict[str, Any]]:
        return [e for p in self.payloads("events") for e in p["events"]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def deduplicated(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per meter, records in arrival order without QoS 1 redeliveries.

    Fails if one (meter, seq) arrived with different data, or a meter's seqs arrive out of order.
    """
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    per_meter: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        key = (rec["meter"], rec["seq"])
        if key in seen:
            assert seen[key] == rec, f"{key} delivered twice with different data"
            continue
        seen[key] = rec
        per_meter.setdefault(rec["meter"], []).append(rec)
    for meter, recs in per_meter.items():
        seqs = [r["seq"] for r in recs]
        assert seqs == sorted(seqs), f"{meter} out of order: {seqs}"
    return per_meter
