"""The wheel as a user installs it, in fresh venvs outside this checkout.

- ``pip install smsa`` (no extras): every command starts, the hub makes a database and a key;
  PostgreSQL alone asks for the ``postgres`` extra, in one line.
- A gateway image (``--no-deps`` plus agent/requirements.txt): no FastAPI, SQLAlchemy or uvicorn,
  and its agent reads the simulator over Modbus TCP and delivers usage through Mosquitto.

One wheel and one venv of each kind per session (pip reaches PyPI or its cache, with the
lock file as constraints).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Collector, agent_config, meters, start_agent, start_sim, tcp_bus
from tests.conftest import Broker
from tests.support import free_port, stop, wait_for

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
AGENT_REQUIREMENTS = ROOT / "agent" / "requirements.txt"
COMMANDS = ("smsa-hub", "smsa-agent", "smsa-meter-sim", "smsa-demo")
SKIP = (".git", ".venv", ".lock-venv", "build", "*.egg-info", "test-artifacts", "__pycache__")
HUB_STACK = ("fastapi", "sqlalchemy", "sqlmodel", "uvicorn", "alembic", "amqtt")


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, check=False, cwd=cwd
    )


def pip(venv: Path, *args: str | Path) -> None:
    """This venv's pip installing into ``venv`` (which has none of its own)."""
    done = run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
               "--quiet", "--disable-pip-version-check", *args)  # fmt: skip
    assert done.returncode == 0, done.stderr


def new_venv(path: Path) -> Path:
    done = run(sys.executable, "-m", "venv", "--without-pip", path)
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the tree: setuptools' build/ folder in the checkout could hold files
    since removed."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    done = run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("smsa-*.whl")
    return built


@pytest.fixture(scope="session")
def base_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    venv = new_venv(tmp_path_factory.mktemp("base") / "venv")
    pip(venv, "-c", LOCK, wheel)
    return venv


@pytest.fixture(scope="session")
def gateway_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    venv = new_venv(tmp_path_factory.mktemp("gateway") / "venv")
    pip(venv, "--no-deps", wheel)
    pip(venv, "-r", AGENT_REQUIREMENTS)
    return venv


def importable(venv: Path, module: str) -> bool:
    return run(venv / "bin" / "python", "-c", f"import {module}").returncode == 0


def requirement_lines(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def test_the_gateway_requirements_are_the_packages_own_dependencies() -> None:
    """agent/requirements.txt names nothing pyproject.toml does not, in the same words."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(requirement_lines(AGENT_REQUIREMENTS)) <= set(project["dependencies"])
    assert not any(name in line.lower() for line in requirement_lines(AGENT_REQUIREMENTS)
                   for name in HUB_STACK)  # fmt: skip


def test_every_dependency_is_pinned_in_the_lock_file() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in LOCK.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    wanted = project["dependencies"] + project["optional-dependencies"]["postgres"]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~ ]", requirement)[0]).lower()
        assert name in pinned, requirement


@pytest.mark.slow
@pytest.mark.packaging
def test_the_wheel_carries_every_web_asset_and_the_grafana_dashboard(wheel: Path) -> None:
    """The vendored docs and chart files are served from the installed package: none is left
    behind by a package-data pattern."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("hub/web/static", "hub/web/templates", "hardware/grafana"):
        files = [
            p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        ]
        assert files, folder
        missing = [p.relative_to(ROOT).as_posix() for p in files]
        assert [name for name in missing if name not in names] == [], folder


@pytest.mark.slow
@pytest.mark.packaging
@pytest.mark.parametrize("command", COMMANDS)
def test_the_base_install_runs_every_command(base_venv: Path, command: str) -> None:
    done = run(base_venv / "bin" / command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {command}")


@pytest.mark.slow
@pytest.mark.packaging
def test_the_base_install_is_a_working_hub_on_sqlite_and_asks_for_postgres(
    base_venv: Path, tmp_path: Path
) -> None:
    hub = base_venv / "bin" / "smsa-hub"
    made = run(hub, "create-key", "--role", "admin", "--db", f"sqlite:///{tmp_path}/hub.db")
    assert made.returncode == 0, made.stderr
    assert re.fullmatch(r"\S{20,}\n", made.stdout), made.stdout
    assert not importable(base_venv, "psycopg")
    refused = run(hub, "create-key", "--role", "admin", "--db", "postgresql://smsa@127.0.0.1:1/x")
    assert refused.returncode == 1
    assert refused.stderr == (
        "smsa-hub: db: PostgreSQL needs the postgres extra: pip install 'smsa[postgres]'\n"
    )


@pytest.fixture
def sim_port(gateway_venv: Path, tmp_path: Path) -> Iterator[int]:
    port = free_port()
    python = str(gateway_venv / "bin" / "python")
    sim = start_sim(["--tcp", f"127.0.0.1:{port}", "--speed", "240", "--meter", "1:2000"],
                    tmp_path / "sim.log", python=python)  # fmt: skip
    yield port
    stop(sim.proc)


@pytest.mark.slow
@pytest.mark.packaging
def test_a_gateway_install_has_no_hub_stack_and_its_agent_delivers_usage(
    gateway_venv: Path, sim_port: int, mosquitto: Broker, tmp_path: Path
) -> None:
    assert [m for m in HUB_STACK if importable(gateway_venv, m)] == []
    hub = run(gateway_venv / "bin" / "smsa-hub", "--help")
    assert (hub.returncode, hub.stdout) == (1, "")
    assert re.fullmatch(r"smsa-hub: the Python package '\w+' is not installed: .*\n", hub.stderr)

    config = agent_config(tmp_path, mosquitto.port, tcp_bus(sim_port), meters([1]), report=0.3)
    with Collector(mosquitto.port) as collector:
        agent = start_agent(config, tmp_path / "agent.log",
                            python=str(gateway_venv / "bin" / "python"))  # fmt: skip
        try:
            wait_for(lambda: len(collector.of("m1")) >= 2 or agent.proc.poll() is not None,
                     timeout=30)  # fmt: skip
            assert agent.proc.poll() is None, agent.text()
        finally:
            stop(agent.proc)
    assert max(r.import_end for r in collector.of("m1")) > min(
        r.import_start for r in collector.of("m1")
    )
