"""paho-mqtt and pymodbus are pinned to one minor series because code here overrides their private
internals: an upgrade must be a deliberate act (re-run the tests named below, then move the pin in
pyproject.toml and requirements.lock), never something a fresh install does by itself."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pymodbus.client import ModbusSerialClient

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Override:
    package: str
    where: str
    what: str
    check: str
    cls: type
    methods: tuple[str, ...]  # the methods of ``cls`` the override replaces or calls


OVERRIDES = [
    Override(
        "paho-mqtt",
        "hub/ingest/transport/paho_bulk.py (BulkClient, the hub's pump)",
        "overrides paho's private Client._handle_publish, _create_socket and loop_read, and uses "
        "_in_packet, _packet_queue, _send_puback, _sock, _ssl, _protocol and _manual_ack",
        "tests/hub/ingest/test_paho_bulk.py and python -m bench.pump_drain",
        mqtt.Client,
        ("_handle_publish", "_create_socket", "loop_read", "_packet_queue", "_send_puback"),
    ),
    Override(
        "pymodbus",
        "agent/modbus/bus.py (_SerialClient, the agent's RTU bus)",
        "overrides pymodbus' ModbusSerialClient.recv and uses its socket and "
        "comm_params.timeout_connect",
        "the RTU tests of tests/agent/test_usage.py and test_faults.py (socat) and "
        "python -m bench.agent_bus",
        ModbusSerialClient,
        ("recv", "close"),
    ),
]


def _pins(package: str) -> set[str]:
    """The series (``2.2``) pyproject.toml's dependencies, and every extra or requirement list
    (agent/requirements.txt) that names ``package``, pin it to."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    agent = [
        line.strip()
        for line in (ROOT / "agent" / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    ]
    lists = {"dependencies": project["dependencies"], "agent/requirements.txt": agent}
    lists.update(project["optional-dependencies"])
    found: set[str] = set()
    for extra, requirements in lists.items():
        for requirement in requirements:
            name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
            if name.lower() != package:
                continue
            match = re.fullmatch(rf"{re.escape(name)}\s*==\s*(\d+\.\d+)\.\*", requirement)
            assert match, (
                f"pyproject.toml [{extra}] has {requirement!r}: {package} must be pinned to one "
                f"minor series ('{package}==X.Y.*')"
            )
            found.add(match[1])
    assert found, f"{package} is not in pyproject.toml's dependencies"
    return found


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: o.package)
def test_the_installed_version_is_the_pinned_series(override: Override) -> None:
    pins = _pins(override.package)
    assert len(pins) == 1, f"pyproject.toml pins {override.package} to several series: {pins}"
    series = pins.pop()
    installed = version(override.package)
    assert installed.split(".")[:2] == series.split("."), (
        f"{override.package} {installed} is installed, outside the pinned series {series}.*: "
        f"{override.where} {override.what}. Upgrading is deliberate: check the override against "
        f"the new version's source, run {override.check}, then move the pin in pyproject.toml "
        "and requirements.lock."
    )


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: o.package)
def test_the_lock_file_is_in_the_pinned_series(override: Override) -> None:
    (series,) = _pins(override.package)
    lock = (ROOT / "requirements.lock").read_text()
    match = re.search(rf"^{re.escape(override.package)}==(\S+)$", lock, re.MULTILINE | re.I)
    assert match, f"requirements.lock has no exact version of {override.package}"
    assert match[1].split(".")[:2] == series.split("."), (
        f"requirements.lock has {override.package}=={match[1]}, pyproject.toml {series}.*"
    )


@pytest.mark.parametrize("override", OVERRIDES, ids=lambda o: o.package)
def test_what_the_override_needs_is_still_there(override: Override) -> None:
    missing = [name for name in override.methods if not hasattr(override.cls, name)]
    assert not missing, (
        f"{override.package} {version(override.package)}: {override.cls.__qualname__} has no "
        f"{', '.join(missing)}, which {override.where} needs (it {override.what})"
    )
