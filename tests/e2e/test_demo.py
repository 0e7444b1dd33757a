"""``smsa-demo`` run as a user runs it: exit 0 when the story happened, no process left behind."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support import wait_for

SCRIPT = Path(sys.executable).parent / "smsa-demo"


def tagged_processes(tag: str) -> list[int]:
    """Pids of live processes whose environment carries ``tag`` (every descendant inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if f"SMSA_DEMO_TAG={tag}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["mosquitto", "embedded"])
def test_demo_tells_its_story_and_cleans_up(tmp_path: Path, broker: str) -> None:
    tag = uuid.uuid4().hex
    env = {**os.environ, "SMSA_DEMO_TAG": tag}
    result = subprocess.run(
        [str(SCRIPT), "--broker", broker, "--workdir", str(tmp_path / "work")],
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
        for p in sorted((tmp_path / "work").glob("*.log"))
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-2000:]}\n{logs}"
    assert "the story happened" in result.stdout
    assert "ledger check: ok" in result.stdout
    wait_for(lambda: not tagged_processes(tag), timeout=10)
