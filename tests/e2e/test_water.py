"""A water meter, end to end (issue 15): the shipped pulse-counter map (iSMA SfAR-1M-4DI on a
1 L/pulse meter) served by the simulator over Modbus TCP, read by ``smsa-agent``, settled by
``smsa-hub serve`` on a per-m3 tariff. The litres settled are the register's span exactly, and
the customer pays them at the tariff's price per m3. The meter's bus counters, from the agent's
status, reach its page on the hub, failures by kind included (issue 15, item 7)."""

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import start_agent, start_hub
from firmware_sim.control import FaultMode
from hardware.regmap import load_model
from protocol.topics import topic
from tests.agent.helpers import set_control
from tests.conftest import Broker
from tests.e2e.conftest import Recorder, minor, tcp_agent_toml
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

MODEL = load_model("sfar-1m-4di-water")
COUNTER = MODEL.register("import_energy")
PRICE_PER_M3 = Decimal("1.20")
GATEWAY = "gw-water"


def _provision(api: HubApi) -> str:
    api.post("/providers", {"id": "waterco", "name": "Water utility", "tier": "retail"})
    tariff = {"id": "water", "currency": "USD",
              "components": [{"provider": "waterco", "per_m3": str(PRICE_PER_M3)}]}  # fmt: skip
    api.post("/tariffs", tariff)
    api.post("/customers", {"id": "wendy", "name": "Wendy Wanjiru"})
    key = str(api.post("/gateways", {"id": GATEWAY})["command_key"])
    api.post("/meters", {"id": "m-water", "gateway": GATEWAY, "customer": "wendy",
                         "tariff": "water", "service": "water",
                         "model": "sfar-1m-4di-water"})  # fmt: skip
    api.topup("wendy", "50.00")
    return key


def test_a_water_meter_settles_its_litres_at_the_price_per_m3(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    hub_url, admin_key = start_hub(processes, work, mosquitto.url)
    usage = Recorder(mosquitto.port, topic(GATEWAY, "usage"))
    usage.wait_subscribed()
    modbus = None
    api = HubApi(hub_url, admin_key)
    try:
        key = _provision(api)
        sim_port = free_port()
        # 1,800 "W" is 1,800 L/h here; at 60x simulated time, 30 litres a second.
        processes.start("meter-sim", ["smsa-meter-sim", "--tcp", f"127.0.0.1:{sim_port}",
                                      "--meter", "1:1800@sfar-1m-4di-water",
                                      "--speed", "60"])  # fmt: skip
        processes.wait_ready("meter-sim", lambda: "listening" in processes.tail("meter-sim", 20))
        start_agent(
            processes,
            work,
            tcp_agent_toml(
                GATEWAY,
                mosquitto.url,
                key,
                work,
                sim_port,
                meters={"m-water": (1, "sfar-1m-4di-water")},
                extra="[status]\npublish_s = 1\n",
            ),
        )
        first = wait_for(lambda: usage.since(0), timeout=20)[0][1]["records"][0]
        wait_for(lambda: (api.get("/meters/m-water")["last_seq"] or 0) >= 4, timeout=30)

        # The tap closes: the counter stops, and the hub settles up to where it stopped.
        modbus = ModbusTcpClient("127.0.0.1", port=sim_port, timeout=1.0, retries=0)
        modbus.connect()
        set_control(modbus, 1, "load_w", 0)

        def counter() -> int:
            assert modbus is not None
            got = modbus.read_holding_registers(COUNTER.address, count=2, device_id=1)
            assert not got.isError(), got
            return MODEL.base_units(COUNTER, list(got.registers))

        end_l = counter()
        wait_for(lambda: api.get("/meters/m-water")["import_wh"] == end_l, timeout=30)
        assert counter() == end_l, "water flowed after the tap closed"

        litres = end_l - first["import_start"]
        lines = [e for e in _entries(api, "wendy") if e["kind"] == "usage"]
        seqs = sorted(e["seq"] for e in lines)
        assert seqs == list(range(first["seq"], first["seq"] + len(seqs))), seqs
        charged = -sum(minor(e["amount"]) for e in lines)
        exact = Decimal(litres) * PRICE_PER_M3 / 1000 * 100  # cents
        assert litres > 100 and abs(charged - exact) < 1, (litres, charged, exact)
        assert minor(api.get("/accounts/wendy")["balance"]) == 5000 - charged
        assert minor(api.get("/providers/waterco")["balance"]) == charged
        assert api.get("/ledger/check")["ok"] is True

        # The meter answers Modbus exceptions for a while: the operator sees them counted.
        bus = wait_for(lambda: api.get("/meters/m-water")["bus"], timeout=10)
        assert bus["requests"] > 0 and bus["polls"] > 0 and bus["exceptions"] == 0, bus
        set_control(modbus, 1, "fault_mode", FaultMode.EXCEPTION)
        faulty = wait_for(lambda: _bus_if(api, lambda b: b["exceptions"] > 0), timeout=20)
        set_control(modbus, 1, "fault_mode", FaultMode.NONE)
        assert faulty["errors"] >= faulty["exceptions"] > 0, faulty
        assert faulty["requests"] > bus["requests"], faulty
        assert "exception" in faulty["last_error"].lower(), faulty
    finally:
        api.close()
        usage.close()
        if modbus is not None:
            modbus.close()


def _bus_if(api: HubApi, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    bus = api.get("/meters/m-water")["bus"]
    return bus if bus is not None and test(bus) else None


def _entries(api: HubApi, account: str) -> list[dict[str, object]]:
    page = api.get(f"/accounts/{account}/entries", limit="500")
    assert page["next_before"] is None, "more than one page"
    return list(page["items"])
