"""Settlement options end to end (issue 15 items 1, 2 and 5): ``smsa-hub serve`` on a SQLite
file, a real Mosquitto, the Modbus TCP meter simulator (DDS238, 10 Wh register steps) and
``smsa-agent``, provisioned through the HTTP API.

- a meter shared 2:1:0: each interval's fee split exactly, the non-contributor paying nothing,
  cut off when the payers' COMBINED credit runs out and not before (hub.control.combined);
- a measured supply mix changing at a period boundary: the generators' settlement follows the
  mix of each period exactly, and each usage entry records the mix it used;
- a meter's customer changed from a moment: intervals starting before it are the old
  customer's, the others the new one's.

Tariff: generation 0.20 + retail 0.05 USD/kWh (1 cent per 40 Wh).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymodbus.client import ModbusTcpClient
from sqlalchemy import create_engine, text

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import start_agent, start_hub
from hardware.regmap import load_model
from protocol.apportion import split
from protocol.topics import topic
from tests.agent.helpers import set_control
from tests.conftest import Broker
from tests.e2e.conftest import Recorder, minor, tcp_agent_toml
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

GATEWAY = "gw-share"
MODEL = load_model("dds238-2-zn-sr")
RELAY = MODEL.register("relay")
IMPORT = MODEL.register("import_energy")
GEN_CENTS_PER_WH = Fraction(2, 100)  # 0.20 USD/kWh
CENTS_PER_WH = Fraction(25, 1000)  # 0.25 USD/kWh in all


@dataclass
class Rig:
    """The hub (started), a recorder of the gateway's usage messages and, once ``run`` is
    called, the simulator and the agent for one meter ``meter`` on unit 1."""

    procs: Processes
    work: Path
    broker: Broker
    api: HubApi
    usage: Recorder
    admin_key: str
    hub_url: str
    modbus: ModbusTcpClient | None = None
    key: str = ""
    meter: str = ""
    extra: list[Any] = field(default_factory=list)

    def provision(self, providers: list[tuple[str, str]], customers: dict[str, str]) -> None:
        for pid, tier in providers:
            self.api.post("/providers", {"id": pid, "name": pid.title(), "tier": tier})
        parts = [{"provider": "gen", "per_kwh": "0.20"}, {"provider": "ret", "per_kwh": "0.05"}]
        tariff = {"id": "t", "currency": "USD", "components": parts}
        self.api.post("/tariffs", tariff)
        for cid, amount in customers.items():
            self.api.post("/customers", {"id": cid, "name": cid.title()})
            self.api.topup(cid, amount)
        self.key = str(self.api.post("/gateways", {"id": GATEWAY})["command_key"])

    def run(self, meter: str, load_w: int, speed: int) -> None:
        self.meter = meter
        port = free_port()
        args = ["--tcp", f"127.0.0.1:{port}", "--meter", f"1:{load_w}", "--speed", str(speed)]
        self.procs.start("meter-sim", ["smsa-meter-sim", *args])
        self.procs.wait_ready("meter-sim", lambda: "listening" in self.procs.tail("meter-sim", 20))
        start_agent(
            self.procs,
            self.work,
            tcp_agent_toml(
                GATEWAY,
                self.broker.url,
                self.key,
                self.work,
                port,
                meters={meter: (1, "dds238-2-zn-sr")},
            ),
        )
        self.modbus = ModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0)
        wait_for(lambda: bool(self.api.get(f"/meters/{meter}")["last_seq"]), timeout=20)

    def _read(self, address: int, count: int) -> list[int]:
        assert self.modbus is not None
        if not self.modbus.connected:
            self.modbus.connect()
        got = self.modbus.read_holding_registers(address, count=count, device_id=1)
        assert not got.isError(), got
        return list(got.registers)

    def relay_on(self) -> bool:
        return self._read(RELAY.address, RELAY.width)[0] == 1

    def register_wh(self) -> int:
        return MODEL.base_units(IMPORT, self._read(IMPORT.address, IMPORT.width))

    def stop_load(self) -> None:
        assert self.modbus is not None
        if not self.modbus.connected:
            self.modbus.connect()
        set_control(self.modbus, 1, "load_w", 0)
        end = self.register_wh()
        wait_for(lambda: self.api.get(f"/meters/{self.meter}")["import_wh"] == end, timeout=30)

    def records(self) -> dict[int, dict[str, Any]]:
        """The usage records the gateway published, by seq."""
        out: dict[int, dict[str, Any]] = {}
        for _, message in self.usage.since(0):
            for r in message["records"]:
                if r["meter"] == self.meter:
                    out[int(r["seq"])] = r
        return out

    def usage_lines(self, account: str) -> dict[int, int]:
        """The account's usage amounts (minor units) for the meter, by seq."""
        out: dict[int, int] = {}
        before: str | None = None
        while True:
            params = {"limit": "500", **({"before": before} if before else {})}
            page = self.api.get(f"/accounts/{account}/entries", **params)
            for e in page["items"]:
                if e["kind"] == "usage" and e["meter"] == self.meter:
                    out[int(e["seq"])] = out.get(int(e["seq"]), 0) + minor(e["amount"])
            if page["next_before"] is None:
                return out
            before = str(page["next_before"])

    def balance(self, account: str) -> int:
        return minor(self.api.get(f"/accounts/{account}")["balance"])

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.procs.logs.glob("*.log")))  # fmt: skip


@pytest.fixture
def rig(processes: Processes, tmp_path: Path, mosquitto: Broker) -> Iterator[Rig]:
    work = tmp_path / "work"
    work.mkdir()
    hub_url, admin_key = start_hub(processes, work, mosquitto.url)
    usage = Recorder(mosquitto.port, topic(GATEWAY, "usage"))
    usage.wait_subscribed()
    api = HubApi(hub_url, admin_key)
    made = Rig(processes, work, mosquitto, api, usage, admin_key, hub_url)
    try:
        yield made
    finally:
        processes.stop_all()
        api.close()
        usage.close()
        if made.modbus is not None:
            made.modbus.close()


def _admin(rig: Rig) -> httpx.Client:
    return httpx.Client(base_url=f"{rig.hub_url}/api/v1", timeout=10.0,
                        headers={"Authorization": f"Bearer {rig.admin_key}"})  # fmt: skip


def test_a_meter_shared_2_1_0_splits_exactly_and_is_cut_on_the_combined_credit(rig: Rig) -> None:
    rig.provision([("gen", "generation"), ("ret", "retail")],
                  {"ann": "1.00", "ben": "1.00", "cat": "50.00"})  # fmt: skip
    sharers = [{"customer": "ann", "weight": 2}, {"customer": "ben", "weight": 1},
               {"customer": "cat", "weight": 0}]  # fmt: skip
    rig.api.post("/meters", {"id": "m-shared", "gateway": GATEWAY, "customer": "ann",
                             "tariff": "t", "sharers": sharers})  # fmt: skip
    # 4000 W at 600x: about 16.7 cents a second; the payers hold 2.00 together
    rig.run("m-shared", 4000, 600)

    # ann pays 2/3: she is below zero after 1.50 while ben still holds 0.50; supply stays on
    seen: list[tuple[int, int]] = []

    def ann_below_zero() -> bool:
        seen.append((rig.balance("ann"), rig.balance("ben")))
        return seen[-1][0] < 0

    wait_for(ann_below_zero, timeout=30, interval=0.1)
    ann, ben = seen[-1]
    assert ann + ben > 0, seen  # the payers can still cover it together: no cut-off yet
    assert rig.relay_on(), (ann, ben, rig.tails())
    assert not rig.api.get("/events", kind="disconnect", meter="m-shared")

    wait_for(lambda: not rig.relay_on(), timeout=30)
    wait_for(lambda: rig.api.get("/meters/m-shared")["import_wh"] == rig.register_wh(),
             timeout=20)  # fmt: skip
    cuts = rig.api.get("/events", kind="disconnect", meter="m-shared")
    assert cuts, rig.tails()
    for cut in cuts:  # decided on the combined balance, below zero
        data = cut.get("data") or {}
        if "balance" in data:
            assert data["balance"] < 0, cut
        if data.get("by") == "credit_control":
            assert data["payers"] == ["ann", "ben"], cut

    records = rig.records()
    by_ann, by_ben, by_cat = (rig.usage_lines(c) for c in ("ann", "ben", "cat"))
    assert by_cat == {} and rig.balance("cat") == 5000  # the non-contributor pays nothing
    assert by_ann and set(by_ben) <= set(by_ann) <= set(records)
    for seq in sorted(set(by_ann) | set(by_ben)):
        total = -(by_ann.get(seq, 0) + by_ben.get(seq, 0))
        expected = split(total, {"ann": 2, "ben": 1, "cat": 0})
        assert (-by_ann.get(seq, 0), -by_ben.get(seq, 0)) == (expected["ann"], expected["ben"])
    charged = -(sum(by_ann.values()) + sum(by_ben.values()))
    assert charged == 200 - (rig.balance("ann") + rig.balance("ben"))
    assert charged > 200  # cut only once the combined credit was used up
    first = min(records)
    energy = rig.api.get("/meters/m-shared")["import_wh"] - records[first]["import_start"]
    assert abs(charged - energy * CENTS_PER_WH) < 1, (charged, energy)
    providers = sum(minor(rig.api.get(f"/providers/{p}")["balance"]) for p in ("gen", "ret"))
    assert providers == charged
    assert rig.api.get("/ledger/check")["ok"] is True


def test_the_supply_mix_changes_at_a_period_boundary(rig: Rig) -> None:
    rig.provision([("gen", "generation"), ("ret", "retail"), ("solar", "generation"),
                   ("wind", "generation")], {"dan": "50.00"})  # fmt: skip
    rig.api.post("/meters", {"id": "m-mix", "gateway": GATEWAY, "customer": "dan",
                             "tariff": "t"})  # fmt: skip
    t0 = datetime.now(UTC).replace(microsecond=0)
    t1 = t0 + timedelta(seconds=8)
    first = rig.api.post("/meters/m-mix/supply-mix", {
        "from": t0.isoformat(), "shares": {"solar": "0.7", "wind": "0.3"}})  # fmt: skip
    assert (first["pool"], first["to"]) == ("gen", None)
    rig.api.post("/meters/m-mix/supply-mix", {
        "from": t1.isoformat(), "shares": {"solar": "0.25", "wind": "0.75"}})  # fmt: skip
    with _admin(rig) as http:  # overlapping, not summing to 1, not a generator: refused
        overlap = {"from": (t0 + timedelta(seconds=2)).isoformat(),
                   "to": (t0 + timedelta(seconds=3)).isoformat(),
                   "shares": {"solar": "1"}}  # fmt: skip
        assert http.post("/meters/m-mix/supply-mix", json=overlap).status_code == 409
        bad = [({"solar": "0.5", "wind": "0.3"}, ["body", "shares"]),
               ({"solar": "0.5", "ret": "0.5"}, ["body", "shares", "ret"]),
               ({"solar": "0.5", "hydro": "0.5"}, ["body", "shares", "hydro"])]  # fmt: skip
        for shares, where in bad:
            late = {"from": (t1 + timedelta(hours=1)).isoformat(), "shares": shares}
            r = http.post("/meters/m-mix/supply-mix", json=late)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == where, r.text
    rig.run("m-mix", 3000, 120)  # 100 Wh a second
    wait_for(lambda: any(datetime.fromisoformat(r["start"]) >= t1 + timedelta(seconds=3)
                         and r["seq"] <= (rig.api.get("/meters/m-mix")["last_seq"] or 0)
                         for r in rig.records().values()), timeout=40)  # fmt: skip
    rig.stop_load()

    records = rig.records()
    solar, wind = rig.usage_lines("provider:solar"), rig.usage_lines("provider:wind")
    assert rig.balance("provider:gen") == 0  # the pool's amount all went to its generators
    exact = {"solar": Fraction(0), "wind": Fraction(0)}
    paid = {"solar": 0, "wind": 0}
    per_period = {"solar": [0, 0], "wind": [0, 0]}
    for seq in sorted(set(solar) | set(wind)):
        rec = records[seq]
        start, end = datetime.fromisoformat(rec["start"]), datetime.fromisoformat(rec["end"])
        after = _share_after(start, end, t1)
        amount = (rec["import_end"] - rec["import_start"]) * GEN_CENTS_PER_WH
        exact["solar"] += amount * (Fraction(7, 10) * (1 - after) + Fraction(1, 4) * after)
        exact["wind"] += amount * (Fraction(3, 10) * (1 - after) + Fraction(3, 4) * after)
        for name, lines in (("solar", solar), ("wind", wind)):
            paid[name] += lines.get(seq, 0)
            assert abs(paid[name] - exact[name]) < 1, (name, seq, paid[name], exact[name])
            per_period[name][after > 0] += lines.get(seq, 0)
    assert all(v > 0 for name in per_period for v in per_period[name]), per_period
    assert minor(rig.api.get("/providers/solar")["balance"]) == paid["solar"]
    assert minor(rig.api.get("/providers/wind")["balance"]) == paid["wind"]
    mixes = _entry_mixes(rig.work / "hub.db", "m-mix")
    for seq, mix in mixes.items():  # each entry records the mix it used
        start = datetime.fromisoformat(records[seq]["start"])
        want = {"solar": "7/10", "wind": "3/10"} if start < t1 else {"solar": "1/4", "wind": "3/4"}
        if datetime.fromisoformat(records[seq]["end"]) <= t1 or start >= t1:
            assert mix == {"gen": want}, (seq, mix)
    history = rig.api.get("/meters/m-mix/history")
    assert [list(h["changes"]) for h in history] == [["supply_mix"], ["supply_mix"]]
    assert rig.api.get("/ledger/check")["ok"] is True


def test_a_meters_customer_changed_from_a_moment(rig: Rig) -> None:
    rig.provision([("gen", "generation"), ("ret", "retail")],
                  {"eve": "50.00", "fred": "50.00"})  # fmt: skip
    rig.api.post("/meters", {"id": "m-move", "gateway": GATEWAY, "customer": "eve",
                             "tariff": "t"})  # fmt: skip
    rig.run("m-move", 3000, 120)
    wait_for(lambda: (rig.api.get("/meters/m-move")["last_seq"] or 0) >= 3, timeout=20)
    changed = rig.api.patch("/meters/m-move", {"customer": "fred"})
    assert changed["customer"] == "fred"
    at = datetime.fromisoformat(rig.api.get("/meters/m-move/history")[0]["changes"]["from"]["to"])
    wait_for(lambda: any(datetime.fromisoformat(r["start"]) >= at + timedelta(seconds=2)
                         and r["seq"] <= (rig.api.get("/meters/m-move")["last_seq"] or 0)
                         for r in rig.records().values()), timeout=30)  # fmt: skip
    rig.stop_load()

    records = rig.records()
    eve, fred = rig.usage_lines("eve"), rig.usage_lines("fred")
    assert eve and fred, (eve, fred)
    assert not set(eve) & set(fred)
    for seq in eve:
        assert datetime.fromisoformat(records[seq]["start"]) < at, seq
    for seq in fred:
        assert datetime.fromisoformat(records[seq]["start"]) >= at, seq
    with _admin(rig) as http:  # the past before the change, and the future, are refused
        back = (at - timedelta(seconds=1)).isoformat()
        assert (
            http.patch("/meters/m-move", json={"customer": "eve", "from": back}).status_code == 409
        )
        ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        r = http.patch("/meters/m-move", json={"customer": "eve", "from": ahead})
        assert r.status_code == 422 and "from" in r.text
    history = rig.api.get("/meters/m-move/history")
    assert len(history) == 1 and history[0]["changes"]["customer"] == {"from": "eve", "to": "fred"}
    assert rig.api.get("/ledger/check")["ok"] is True


def _share_after(start: datetime, end: datetime, boundary: datetime) -> Fraction:
    """The part of ``[start, end)`` at or after ``boundary``."""
    if end <= boundary:
        return Fraction(0)
    if start >= boundary or end == start:
        return Fraction(1)
    return Fraction((end - boundary) // timedelta(microseconds=1),
                    (end - start) // timedelta(microseconds=1))  # fmt: skip


def _entry_mixes(db: Path, meter: str) -> dict[int, dict[str, Any]]:
    """The mix each usage entry of ``meter`` recorded, by seq (read from the hub's file)."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            sql = "SELECT seq, metadata FROM journal_entries WHERE meter_id = :m AND kind = 'usage'"
            rows = conn.execute(text(sql), {"m": meter})
            out = {}
            for seq, meta in rows:
                data = json.loads(meta) if isinstance(meta, str) else meta
                out[int(seq)] = data.get("mix")
            return out
    finally:
        engine.dispose()
