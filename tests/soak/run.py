"""One soak run: build the world, run traffic and faults from the seed, heal, settle, check."""

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from demo.procs import Processes
from tests.soak import checks, schedule
from tests.soak.checks import register_wh
from tests.soak.faults import Injector, heal_all
from tests.soak.traffic import Sent
from tests.soak.traffic import run as run_traffic
from tests.soak.world import MAX_OUTBOX_ROWS, RECONNECT_ABOVE, SPEED, World, build, leaked
from tests.support import wait_for

log = logging.getLogger(__name__)

SETTLE_S = 240.0  # after the faults: how long the system may take to settle everything


@dataclass
class Summary:
    seed: int
    minutes: float
    gateways: int
    meters: int
    faults: dict[str, int] = field(default_factory=dict)
    records: int = 0
    energy_wh: int = 0
    topups_minor: int = 0
    usage_minor: int = 0
    providers_minor: int = 0
    max_debit_error_minor: float = 0.0
    topup_replays: int = 0
    operator_commands: int = 0
    tariff_versions: int = 0
    commands: dict[str, int] = field(default_factory=dict)
    outbox_peak: dict[str, int] = field(default_factory=dict)
    settle_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        usd = lambda minor: f"{minor / 100:.2f}"  # noqa: E731
        return [
            f"soak seed {self.seed}: {self.gateways} gateways, {self.meters} meters, "
            f"{self.minutes} min, settled in {self.settle_s:.0f} s",
            f"faults ({sum(self.faults.values())}): {kinds}",
            f"outbox peak (bound {MAX_OUTBOX_ROWS}): {self.outbox_peak}",
            f"records {self.records}, energy {self.energy_wh} Wh",
            f"money (USD): top-ups {usd(self.topups_minor)}, usage {usd(self.usage_minor)}, "
            f"providers {usd(self.providers_minor)}; max debit error "
            f"{self.max_debit_error_minor:.2f} minor units",
            f"traffic: {self.topup_replays} top-up replays, {self.operator_commands} operator "
            f"commands, {self.tariff_versions} tariff versions; commands {self.commands}",
            f"violations: {len(self.violations)}",
            *(f"  - {v}" for v in self.violations),
        ]


def soak(seed: int, minutes: float, work: Path, gateways: int = 4) -> Summary:
    seconds = minutes * 60
    summary = Summary(seed, minutes, gateways, 0)
    with ExitStack() as stack:
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        procs = Processes(logs)
        world = World(work, gateways, procs, stack)
        try:
            _run(world, seed, seconds, summary)
        finally:
            procs.stop_all()
            world.stop_broker()
            stack.close()
        summary.violations += [f"process leaked: {p}" for p in leaked(world.started)]
        proxies = [t.name for t in threading.enumerate() if t.name.startswith("proxy-")]
        summary.violations += [f"thread leaked: {name}" for name in proxies]
    return summary


def _run(world: World, seed: int, seconds: float, summary: Summary) -> None:
    build(world, random.Random(f"{seed}:world"))
    meters = world.meters
    summary.meters = len(meters)
    assert world.api is not None
    db = world.work / "hub.db"
    conn = checks.connect(db)
    try:
        _wait(lambda: _reported(conn) == len(meters), 90, "every meter's first report")
        faults = schedule.faults(
            random.Random(f"{seed}:faults"), seconds, len(world.gateways), meters
        )
        actions = schedule.traffic(
            random.Random(f"{seed}:traffic"),
            seconds,
            sorted(world.customers.values()),
            [m.id for m in meters],
            "residential",
        )
        world.set_speed(SPEED)
        injector = Injector(world)
        t0 = time.monotonic()
        sent_box: list[Sent] = []
        api, deadline = world.api, t0 + seconds + 120
        traffic = threading.Thread(
            target=lambda: sent_box.append(run_traffic(api, actions, t0, deadline)),
            name="traffic",
        )
        traffic.start()
        injector.run(faults, t0)
        injector.join()
        traffic.join()
        sent = sent_box[0] if sent_box else Sent()
        log.info("faults and traffic done after %.0f s; healing", time.monotonic() - t0)
        heal_all(world)
        world.set_speed(0)
        summary.violations += [f"harness: {e}" for e in injector.errors]
        summary.violations += [f"API refused: {r}" for r in sent.refused]
        settled = time.monotonic()
        truth, relay_on = _truth(world)
        _settle(world, conn, truth, relay_on, sent)
        summary.settle_s = time.monotonic() - settled
        figures = checks.Figures()
        summary.violations += checks.ledger(world.api.get("/ledger/check"))
        summary.violations += checks.energy(conn, truth, figures)
        summary.violations += checks.debits(conn, world.customers, figures)
        summary.violations += checks.money(conn, sent, world.initial_topups, figures)
        summary.violations += _lasting(
            lambda: checks.commands(conn, figures) + _relay_check(world, conn, sent)
        )
        agent_dbs = [gw.work / "agent.db" for gw in world.gateways]
        summary.violations += _lasting(
            lambda: checks.agent_figures(conn, agent_dbs, world.customers)
        )
        summary.faults = dict(Counter(injector.injected))
        summary.outbox_peak = injector.outbox_peak
        summary.records, summary.energy_wh = figures.records, figures.energy_wh
        summary.topups_minor, summary.usage_minor = figures.topups, figures.usage
        summary.providers_minor = figures.providers
        summary.max_debit_error_minor = float(figures.max_debit_error)
        summary.topup_replays, summary.tariff_versions = sent.replays, sent.tariffs
        summary.operator_commands = len(sent.commands)
        summary.commands = figures.commands
    finally:
        conn.close()


def _reported(conn: Any) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM meters WHERE last_seq IS NOT NULL").fetchone()[0])


def _truth(world: World) -> tuple[dict[str, int], dict[str, bool]]:
    energy, relay = {}, {}
    for gw in world.gateways:
        for m in gw.meters:
            block = world.read_control(gw, m)
            energy[m.id] = block["energy_wh"]
            relay[m.id] = bool(block["relay"])
    return energy, relay


def _relay_check(world: World, conn: Any, sent: Sent) -> list[str]:
    return checks.relays(
        conn,
        _truth(world)[1],
        customers=world.customers,
        protected=world.protected,
        sent=sent,
        reconnect_above=RECONNECT_ABOVE,
    )


def _settle(
    world: World, conn: Any, truth: dict[str, int], relay_on: dict[str, bool], sent: Sent
) -> None:
    """Until every meter's energy is posted, no command is open and no relay contradicts the
    rules (or ``SETTLE_S`` passes: the checks then name what is missing)."""

    def done() -> bool:
        seen = checks.posted(conn)
        if any(seen.get(m, (0,) * 6)[4] != register_wh(wh) for m, wh in truth.items()):
            return False
        if checks.commands(conn, checks.Figures()):
            return False
        return not _relay_check(world, conn, sent)

    end = time.monotonic() + SETTLE_S
    while time.monotonic() < end and not done():
        time.sleep(1.0)


def _lasting(check: Callable[[], list[str]], within: float = 30.0) -> list[str]:
    """The violations ``check`` still finds after ``within`` seconds: a command the hub decided
    a moment ago (a credit state after the last posting) is in flight, not stuck."""
    end = time.monotonic() + within
    while (found := check()) and time.monotonic() < end:
        time.sleep(1.0)
    return found


def _wait(check: Any, timeout: float, what: str) -> None:
    try:
        wait_for(check, timeout=timeout, interval=0.5)
    except AssertionError as exc:
        raise RuntimeError(f"timed out waiting for {what}") from exc


def write_json(summary: Summary, path: Path) -> None:
    path.write_text(json.dumps(asdict(summary), indent=2, sort_keys=True) + "\n")
