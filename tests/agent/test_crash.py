"""kill -9 of the agent mid-run, restart: no record lost, none carrying conflicting data."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from agent.uplink.outbox import RESEND_AFTER_S
from tests.agent.helpers import (
    Collector,
    Procs,
    agent_config,
    energy_register_wh,
    kill9,
    meter_status,
    meters,
    modbus_tcp,
    set_control,
    tcp_bus,
    tcp_sim_args,
    unique_by_seq,
)
from tests.conftest import Broker
from tests.support import free_port, wait_for

UNITS = [1, 2, 3]


@pytest.mark.slow
def test_kill9_restart_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, dict.fromkeys(UNITS, 0), "--speed", "300"))
    config = agent_config(
        tmp_path, mosquitto.port, tcp_bus(port), meters(UNITS), poll=0.05, report=0.3
    )
    status = tmp_path / "status.json"
    rng = random.Random(7)
    with Collector(mosquitto.port) as collector, modbus_tcp(port) as client:
        agent = procs.agent(config)
        wait_for(
            lambda: all(meter_status(status, f"m{u}").get("import_wh") == 0 for u in UNITS),
            timeout=20,
        )
        for unit, watts in zip(UNITS, (3000, 1000, 2000), strict=True):
            set_control(client, unit, "load_w", watts)
        for _ in range(4):
            # kill at an arbitrary point: after a random number of further published records
            target = len(collector.records) + rng.randint(2, 9)
            wait_for(lambda: len(collector.records) >= target, timeout=20)  # noqa: B023
            kill9(agent)
            agent = procs.agent(config)
        for unit in UNITS:
            set_control(client, unit, "load_w", 0)
        final = {u: energy_register_wh(client, u) for u in UNITS}

        def caught_up() -> bool:
            for u in UNITS:
                recs = collector.of(f"m{u}")
                if not recs or max(recs, key=lambda r: r.seq).import_end != final[u]:
                    return False
                # every seq up to the last: a record in flight when the agent was killed is
                # published again only RESEND_AFTER_S after it was first sent
                seqs = {r.seq for r in recs}
                if len(seqs) != max(seqs):
                    return False
            return True

        wait_for(caught_up, timeout=30 + RESEND_AFTER_S)
    for unit in UNITS:
        recs = collector.of(f"m{unit}")
        by_seq = unique_by_seq(recs)  # a repeated seq always carries identical data
        assert sorted(by_seq) == list(range(1, len(by_seq) + 1))  # nothing lost
        ordered = [by_seq[s] for s in sorted(by_seq)]
        assert ordered[0].import_start == 0
        for a, b in itertools.pairwise(ordered):
            assert b.import_start == a.import_end and b.start == a.end
        assert sum(r.energy for r in ordered) == final[unit] > 0
