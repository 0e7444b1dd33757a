"""Provider selection end to end (issue 15 item 3, contract section 5): four meters served by
the simulator over Modbus TCP, read by ``smsa-agent``, settled by ``smsa-hub serve``, all
provisioned through the API. Two generation offers (``gen-cheap`` at 0.10, ``gen-dear`` at
0.14 per kWh, paying the platform a priority fee of 0.02) and the wires (0.05):

- ``least_cost`` settles the cheaper offer;
- ``sla`` settles the provider the customer has an agreement with, though dearer;
- ``priority`` settles the provider paying the fee and posts the fee to the platform;
- a meter whose tariff is changed from a date (``PATCH /meters/{id}``) is priced by the old
  tariff before it and by the new one after it.

The agent is told the choice in its credit state and prices with the chosen providers (a
record it priced otherwise is a recorded mismatch, here at most by its rounding remainder)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from demo.api import HubApi
from demo.procs import DemoError, Processes
from demo.stack import start_agent, start_hub
from tests.conftest import Broker
from tests.e2e.conftest import minor, tcp_agent_toml
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

GATEWAY = "gw-sel"
UNITS = {"m-least": 1, "m-sla": 2, "m-prio": 3, "m-patch": 4}
CUSTOMERS = {"m-least": "cl", "m-sla": "cs", "m-prio": "cp", "m-patch": "cc"}
CANDIDATES = ["t-cheap", "t-dear", "t-wires"]
FEE = Decimal("0.02")  # per kWh, gen-dear to the platform


def _provision(api: HubApi) -> str:
    for pid, tier, fee in (("gen-cheap", "generation", None), ("gen-dear", "generation", FEE),
                           ("wires", "distribution", None), ("old-co", "retail", None),
                           ("new-co", "retail", None)):  # fmt: skip
        body: dict[str, Any] = {"id": pid, "name": pid, "tier": tier}
        if fee is not None:
            body["priority_fee"] = str(fee)
        api.post("/providers", body)
    for tid, provider, price in (("t-cheap", "gen-cheap", "0.10"), ("t-dear", "gen-dear", "0.14"),
                                 ("t-wires", "wires", "0.05"), ("t-old", "old-co", "0.10"),
                                 ("t-new", "new-co", "0.30")):  # fmt: skip
        component = {"provider": provider, "per_kwh": price}
        api.post("/tariffs", {"id": tid, "currency": "USD", "components": [component]})
    for customer in CUSTOMERS.values():
        api.post("/customers", {"id": customer, "name": customer})
        api.topup(customer, "100.00")
    api.post("/slas", {"customer": "cs", "provider": "gen-dear", "from": "2026-01-01T00:00:00Z"})
    key = str(api.post("/gateways", {"id": GATEWAY})["command_key"])
    for meter, policy in (("m-least", "least_cost"), ("m-sla", "sla"), ("m-prio", "priority")):
        api.post("/meters", {"id": meter, "gateway": GATEWAY, "customer": CUSTOMERS[meter],
                             "selection": {"policy": policy, "tariffs": CANDIDATES}})  # fmt: skip
    api.post("/meters", {"id": "m-patch", "gateway": GATEWAY, "customer": "cc",
                         "tariff": "t-old"})  # fmt: skip
    return key


def _lines(api: HubApi, account: str) -> list[dict[str, Any]]:
    """Every journal line of ``account``, newest first."""
    items: list[dict[str, Any]] = []
    params = {"limit": "500"}
    while True:
        page = api.get(f"/accounts/{account}/entries", **params)
        items += page["items"]
        if page["next_before"] is None:
            return items
        params["before"] = str(page["next_before"])


def _by_meter(api: HubApi, provider: str, meter: str) -> list[dict[str, Any]]:
    return [x for x in _lines(api, f"provider:{provider}") if x["meter"] == meter]


def test_each_policy_settles_its_provider_and_a_tariff_change_applies_from_its_date(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    hub_url, admin_key = start_hub(processes, work, mosquitto.url)
    api = HubApi(hub_url, admin_key)
    try:
        key = _provision(api)
        sim_port = free_port()
        # 6 kW at 60x simulated time: 100 Wh a second, 1 to 1.4 cents of generation each
        meters = [a for u in UNITS.values() for a in ("--meter", f"{u}:6000")]
        processes.start("meter-sim", ["smsa-meter-sim", "--tcp", f"127.0.0.1:{sim_port}",
                                      *meters, "--speed", "60"])  # fmt: skip
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
                meters={m: (u, "dds238-2-zn-sr") for m, u in UNITS.items()},
            ),
        )
        wait_for(lambda: (api.get("/meters/m-patch")["last_seq"] or 0) >= 2, timeout=30)
        change = datetime.now(UTC) + timedelta(seconds=2)
        api.patch("/meters/m-patch", {"tariff": "t-new", "from": change.isoformat()})
        done = datetime.now(UTC) + timedelta(seconds=5)

        def settled_after() -> bool:
            return all(api.get(f"/meters/{m}")["last_seq"] or 0 for m in UNITS) and bool(
                [x for x in _lines(api, "provider:new-co") if _at(x) > done]
            )

        wait_for(settled_after, timeout=40)

        # least_cost: the cheaper generation offer, with the wires
        assert _by_meter(api, "gen-cheap", "m-least") and _by_meter(api, "wires", "m-least")
        assert not _by_meter(api, "gen-dear", "m-least")
        # sla: the agreed provider, though dearer
        assert _by_meter(api, "gen-dear", "m-sla") and not _by_meter(api, "gen-cheap", "m-sla")
        # priority: the provider paying the fee; the fee is its own line, to the platform
        prio = _by_meter(api, "gen-dear", "m-prio")
        assert prio and not _by_meter(api, "gen-cheap", "m-prio")
        fees = -sum(minor(x["amount"]) for x in prio if minor(x["amount"]) < 0)
        platform = [x for x in _lines(api, "platform:USD") if x["meter"] == "m-prio"]
        assert fees > 0 and sum(minor(x["amount"]) for x in platform) == fees
        energy = _energy(api, "m-prio")
        assert abs(Decimal(energy) * FEE / 1000 * 100 - fees) < 1, (energy, fees)
        # PATCH from a date: the intervals before it at the old tariff, after it at the new
        with pytest.raises(DemoError, match="answered 409"):  # settled intervals stay priced
            api.patch("/meters/m-patch", {"tariff": "t-old", "from": change.isoformat()})
        old = _by_meter(api, "old-co", "m-patch")
        new = _by_meter(api, "new-co", "m-patch")
        assert old and new
        # (an interval across the date is the old tariff's: every new one ends after it)
        assert min(_at(x) for x in new) > change
        first_new = min(x["seq"] for x in new)
        assert max(x["seq"] for x in old if _at(x) <= change) < first_new
        # from then on the old provider gets at most its rounding remainder, carried (< 1 cent)
        assert sum(minor(x["amount"]) for x in old if x["seq"] >= first_new) <= 1
        # at three times the price, the same supply costs about three times as much. The meter
        # draws a steady 6 kW, so an interval's energy follows its length (from the end of the
        # one before to its own), and that length follows the agent's timing (in one CI run
        # the amounts put the intervals after the change at about half the length of those
        # before): cents per second of supply, not per interval; the old tariff's remainders
        # after the change are not its charges
        ends = {x["seq"]: _at(x) for x in old + new}
        charged = [x for x in old if x["seq"] < first_new]
        assert _cents_per_s(new, ends) > 2 * _cents_per_s(charged, ends)
        # the agent was told each choice and priced with the chosen providers: where it
        # disagreed (recorded), only by the rounding remainder it carries, never by provider
        chosen = {"m-least": {"gen-cheap", "wires"}, "m-sla": {"gen-dear", "wires"},
                  "m-prio": {"gen-dear", "wires"}}  # fmt: skip
        for meter, providers in chosen.items():
            for row in api.get(f"/meters/{meter}/mismatches"):
                hub, agent = row["hub_shares"], row["agent_shares"]
                assert set(agent) <= providers and set(hub) <= providers, (meter, row)
                for p in providers:
                    assert abs(minor(hub.get(p, "0")) - minor(agent.get(p, "0"))) <= 1, row
        assert api.get("/ledger/check")["ok"] is True
    finally:
        api.close()


def _at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["at"])


def _cents_per_s(lines: list[dict[str, Any]], ends: dict[int, datetime]) -> float:
    """What ``lines`` charged per second of the intervals they cover (an interval whose
    predecessor's end is not in ``ends``, the meter's first, is left out)."""
    spans = [(minor(x["amount"]), (ends[x["seq"]] - ends[x["seq"] - 1]).total_seconds())
             for x in lines if x["seq"] - 1 in ends]  # fmt: skip
    assert spans, lines
    return sum(c for c, _ in spans) / sum(s for _, s in spans)


def _energy(api: HubApi, meter: str) -> int:
    """The energy the meter's settled entries cover (Wh): its posted register span."""
    days = api.get(f"/meters/{meter}/consumption", days="2")
    return sum(int(d["used"]) for d in days)
