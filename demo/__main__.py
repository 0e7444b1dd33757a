"""``smsa-demo`` (temporary): simulated meters on a local Modbus TCP port, read back, one
relay switched off and its energy seen frozen while the others keep counting.

Until the whole-system demo exists, this shows the meter side: it starts ``smsa-meter-sim``
with three meters (two DDS238 with built-in relays, one SDM120 switched by a relay module),
at 3600x speed (an hour a second), prints a table before and after, and exits 0 when the
story held.
"""

import subprocess
import sys
import time
from dataclasses import dataclass

from pymodbus.client import ModbusTcpClient

from hardware.regmap import MeterModel, load_model

SPEED = 3600
# unit -> (model, load W); unit 10 is a relay module whose coil 0 feeds unit 3.
METERS = {1: ("dds238-2-zn-sr", 1500), 2: ("dds238-2-zn-sr", 800), 3: ("sdm120", 2200)}
RELAY_MODULE = 10
CONTROL_SIM_SECONDS = 0x900F


class DemoError(Exception):
    """The story did not hold (or the simulator did not start)."""


@dataclass(frozen=True)
class Row:
    unit: int
    model: str
    relay: str
    power_w: float
    energy_kwh: float


def start_sim() -> tuple[subprocess.Popen[str], int]:
    meters = [a for u, (m, w) in METERS.items() for a in ("--meter", f"{u}:{w}@{m}")]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_sim",
            "--tcp",
            "127.0.0.1:0",
            *meters,
            "--relay-unit",
            f"{RELAY_MODULE}:3",
            "--speed",
            str(SPEED),
            "--log-level",
            "ERROR",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().strip()
    if not ready.startswith("listening"):
        stop_sim(proc)
        raise DemoError(f"the simulator did not start: {ready!r}")
    print(f"simulator: {ready} (speed {SPEED}x: one simulated hour per second)")
    return proc, int(ready.split()[2].rsplit(":", 1)[1])


def stop_sim(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout:
        proc.stdout.close()


def read(client: ModbusTcpClient, model: MeterModel, name: str, unit: int) -> float:
    reg = model.register(name)
    reader = (
        client.read_input_registers if reg.function == "input" else client.read_holding_registers
    )
    response = reader(reg.address, count=reg.width, device_id=unit)
    if response.isError():
        raise DemoError(f"unit {unit}: reading {name} failed: {response}")
    return float(model.value(reg, list(response.registers)))


def relay_state(client: ModbusTcpClient, unit: int, model: MeterModel) -> str:
    if model.relay is not None:
        return "on" if read(client, model, model.relay.register_name, unit) else "off"
    response = client.read_coils(0, count=1, device_id=RELAY_MODULE)
    if response.isError():
        raise DemoError(f"relay module {RELAY_MODULE}: {response}")
    return "on" if response.bits[0] else "off"


def snapshot(client: ModbusTcpClient) -> list[Row]:
    rows = []
    for unit, (name, _) in METERS.items():
        model = load_model(name)
        rows.append(
            Row(
                unit,
                name,
                relay_state(client, unit, model),
                read(client, model, "power", unit),
                read(client, model, "import_energy", unit),
            )
        )
    return rows


def sim_seconds(client: ModbusTcpClient) -> int:
    response = client.read_holding_registers(CONTROL_SIM_SECONDS, count=4, device_id=1)
    if response.isError():
        raise DemoError(f"control block: {response}")
    return int.from_bytes(b"".join(w.to_bytes(2, "big") for w in response.registers), "big")


def wait_simulated(client: ModbusTcpClient, seconds: int) -> None:
    target = sim_seconds(client) + seconds
    deadline = time.monotonic() + 10
    while sim_seconds(client) < target:
        if time.monotonic() > deadline:
            raise DemoError("simulated time does not advance")
        time.sleep(0.05)


def table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    print(f"{'unit':>4}  {'model':<15} {'relay':<5} {'power W':>9} {'energy kWh':>11}")
    for r in rows:
        print(f"{r.unit:>4}  {r.model:<15} {r.relay:<5} {r.power_w:>9.1f} {r.energy_kwh:>11.3f}")


def story(client: ModbusTcpClient) -> None:
    wait_simulated(client, 3600)
    first = snapshot(client)
    table("after one simulated hour", first)
    # Meter 1: its own relay, holding 0x001A written with function 16.
    if client.write_registers(0x001A, [0], device_id=1).isError():
        raise DemoError("switching meter 1 off failed")
    # Meter 3 has no relay: coil 0 of the relay module feeding it, function 5.
    if client.write_coil(0, False, device_id=RELAY_MODULE).isError():
        raise DemoError("switching meter 3 off failed")
    print("\nswitched meter 1 off (its relay, function 16) and meter 3 off (relay module coil)")
    off = snapshot(client)
    wait_simulated(client, 3600)
    later = snapshot(client)
    table("one simulated hour later", later)
    for before, after in zip(off, later, strict=True):
        if after.unit in (1, 3):
            if after.relay != "off" or after.power_w != 0 or after.energy_kwh != before.energy_kwh:
                raise DemoError(f"meter {after.unit} is off but its energy moved")
        elif after.energy_kwh <= before.energy_kwh:
            raise DemoError(f"meter {after.unit} is on but its energy did not advance")
    print("\nok: energy frozen on meters 1 and 3, still counting on meter 2")


def main() -> int:
    started = time.monotonic()
    try:
        proc, port = start_sim()
    except DemoError as exc:
        print(f"smsa-demo: error: {exc}", file=sys.stderr)
        return 1
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=1)
    try:
        if not client.connect():
            raise DemoError(f"cannot connect to 127.0.0.1:{port}")
        story(client)
    except DemoError as exc:
        print(f"smsa-demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
        stop_sim(proc)
    print(f"demo finished in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
