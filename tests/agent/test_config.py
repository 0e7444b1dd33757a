"""A bad configuration stops the agent before any bus, with one line naming the file and key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import load
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
