"""A bad configuration stops the agent before any bus, with one line naming the file and key."""

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from agent.errors import ConfigError
from agent.modbus.poller import meter_point
from agent.settings import load
from hardware.regmap import REGISTERS_DIR
from tests.agent.helpers import agent_config, meters, tcp_bus


def _run(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", "--config", str(config), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


GAS = 'unit = 2\nmodel = "sfar-1m-4di-gas"'
ELECTRIC = 'unit = 2\nmodel = "dds238-2-zn-sr"'
CV = "calorific_value_mj_m3 = 39.5"


def _good(tmp_path: Path) -> Path:
    return agent_config(tmp_path, 1883, tcp_bus(5020), meters([1, 2]))


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (
            lambda t: t.replace('name = "bus0"', 'name = "bus0"\nspeed = 3', 1),
            "buses[0].speed",
            "unknown key",
        ),
        (lambda t: t.replace("gateway_id", "gateway"), "gateway", "unknown key"),
        (
            lambda t: t.replace("[security]\ncommand_key", "[security]\nkey"),
            "security.key",
            "unknown key",
        ),
        (lambda t: t.replace('host = "127.0.0.1"\n', ""), "buses[0].host", "missing"),
        (
            lambda t: t.replace("[storage]\npath = ", "[storage]\nwhere = "),
            "storage.where",
            "unknown key",
        ),
        (
            lambda t: t.replace('bus = "bus0"\nunit = 2', 'bus = "bus9"\nunit = 2'),
            "meters[1].bus",
            "unknown bus 'bus9'",
        ),
        (
            lambda t: t.replace('unit = 2\nmodel = "dds238-2-zn-sr"', 'unit = 2\nmodel = "ddx"'),
            "meters[1].model",
            "unknown model 'ddx'",
        ),
        (lambda t: t.replace("unit = 2", "unit = 1"), "meters[1].unit", "also 'm1'"),
        (lambda t: t.replace('id = "m2"', 'id = "m1"'), "meters[1].id", "duplicate meter id"),
        (lambda t: t.replace('transport = "tcp"', 'transport = "usb"'), "buses[0].transport", ""),
        (
            lambda t: t.replace("poll_interval_s = 0.1", "poll_interval_s = -1"),
            "timing.poll_interval_s",
            "greater than 0",
        ),
        (
            lambda t: t.replace(
                'unit = 2\nmodel = "dds238-2-zn-sr"', 'unit = 2\nmodel = "modbus-relay-module"'
            ),
            "meters[1].model",
            "not a meter model",
        ),
        (lambda t: t + "relay_unit = 9\n", "meters[1].relay_model", "missing"),
        (
            lambda t: (
                t + 'relay_unit = 9\nrelay_model = "modbus-relay-module"\nrelay_channel = 8\n'
            ),
            "meters[1].relay_channel",
            "8 channels",
        ),
        (lambda t: t.replace("[[buses]]", "[[buses]\n"), "-", "not valid TOML"),
        (
            lambda t: t.replace('unit = 2\nmodel = "dds238-2-zn-sr"', GAS),
            "meters[1].calorific_value_mj_m3",
            "counts gas volume: give the supply's calorific value",
        ),
        (
            lambda t: t.replace('unit = 2\nmodel = "dds238-2-zn-sr"', f"{ELECTRIC}\n{CV}"),
            "meters[1].calorific_value_mj_m3",
            "only for a gas meter that counts volume",
        ),
        (
            lambda t: t.replace("gateway_id", 'register_path = "/no/such/dir"\ngateway_id'),
            "register_path",
            "/no/such/dir: not a directory",
        ),
    ],
)
def test_bad_config_exits_naming_key_and_file(
    tmp_path: Path, edit: object, key: str, words: str
) -> None:
    config = _good(tmp_path)
    config.write_text(edit(config.read_text()))  # type: ignore[operator]
    result = _run(config)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(config) in lines[0] and f": {key}:" in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "agent.db").exists()  # nothing was opened


def test_missing_file_and_good_file(tmp_path: Path) -> None:
    result = _run(tmp_path / "nope.toml")
    assert (
        result.returncode == 2 and "nope.toml" in result.stderr and "cannot read" in result.stderr
    )
    config = _good(tmp_path)
    result = _run(config, "check")
    assert result.returncode == 0, result.stderr
    assert "2 meters" in result.stdout


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _good(tmp_path)
    monkeypatch.setenv("SMSA_AGENT_MQTT__URL", "mqtts://broker.example:8883")
    monkeypatch.setenv("SMSA_AGENT_TIMING__REPORT_INTERVAL_S", "900")
    settings = load(config)
    assert settings.mqtt.url == "mqtts://broker.example:8883"
    assert settings.timing.report_interval_s == 900
    assert settings.timing.poll_interval_s == 0.1  # the rest of the section still from the file
    for bad in ("http://nope", "mqtt://host:port", "mqtt://host/path"):
        monkeypatch.setenv("SMSA_AGENT_MQTT__URL", bad)
        result = _run(config, env=dict(os.environ))
        assert result.returncode == 2 and ": mqtt.url:" in result.stderr, result.stderr


def test_status_without_running_agent(tmp_path: Path) -> None:
    result = _run(_good(tmp_path), "status")
    assert result.returncode == 3
    assert "status.json" in result.stderr and "no status file" in result.stderr


def test_a_gas_meter_reports_wh_from_its_volume_and_calorific_value(tmp_path: Path) -> None:
    config = _good(tmp_path)
    config.write_text(config.read_text().replace(ELECTRIC, f"{GAS}\n{CV}"))
    meter = load(config).meters[1]
    # 39.5 MJ/m3 x 1.02264 / 3.6 MJ per kWh = 11.2206 kWh per m3
    assert meter.wh_per_m3 == Decimal("39.5") * Decimal("1.02264") * 1000 / Decimal("3.6")
    assert round(meter.wh_per_m3, 1) == Decimal("11220.6")


def test_register_path_adds_maps_from_outside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maps = tmp_path / "maps"
    maps.mkdir()
    shipped = (REGISTERS_DIR / "sfar-1m-4di-water.toml").read_text()
    (maps / "site-water.toml").write_text(
        shipped.replace('model = "sfar-1m-4di-water"', 'model = "site-water"')
    )
    config = _good(tmp_path)
    text = config.read_text().replace(ELECTRIC, 'unit = 2\nmodel = "site-water"')
    config.write_text(f'register_path = "{maps}"\n{text}')
    settings = load(config)
    assert settings.register_dirs == (maps,)
    assert settings.meters[1].model == "site-water"
    # The same through the environment, PATH-style, for a file without the key.
    config.write_text(text)
    monkeypatch.setenv("SMSA_AGENT_REGISTER_PATH", f"{tmp_path / 'empty'}{os.pathsep}{maps}")
    (tmp_path / "empty").mkdir()
    assert load(config).register_dirs == (tmp_path / "empty", maps)
    # A map may not take a shipped map's name: one name, one file.
    clash = tmp_path / "clash"
    clash.mkdir()
    (clash / "dds238-2-zn-sr.toml").write_text((REGISTERS_DIR / "dds238-2-zn-sr.toml").read_text())
    monkeypatch.setenv("SMSA_AGENT_REGISTER_PATH", str(clash))
    with pytest.raises(ConfigError, match=r"meters\[0\]\.model.*also defined in"):
        load(config)


def test_a_meter_reads_its_current_unless_told_not_to(tmp_path: Path) -> None:
    """The DDS238's energy and current are one request; ``report_current = false`` (a hub
    that predates the extension) reads the energy alone; a gas meter has no current."""
    config = _good(tmp_path)
    config.write_text(config.read_text().replace(ELECTRIC, f"{ELECTRIC}\nreport_current = false"))
    settings = load(config)
    bus = settings.buses[0]
    reading, quiet = (meter_point(m, bus) for m in settings.meters)
    assert [r.name for r in reading.currents] == ["current"]
    assert [(b.address, b.count) for b in reading.blocks] == [(0x0A, 4)]
    assert quiet.currents == () and [(b.address, b.count) for b in quiet.blocks] == [(0x0A, 2)]
    config.write_text(
        config.read_text().replace(f"{ELECTRIC}\nreport_current = false", f"{GAS}\n{CV}")
    )
    assert meter_point(load(config).meters[1], bus).currents == ()
