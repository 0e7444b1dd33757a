"""``smsa-demo`` run as a user runs it: exit 0 when the story happened, no process left behind."""

import itertools
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
    assert_one_line_per_fact(result.stdout)
    assert_bob_saw_his_cut_off(result.stdout)
    wait_for(lambda: not tagged_processes(tag), timeout=10)


def assert_one_line_per_fact(out: str) -> None:
    """The demo's feed shows the story, not the traffic: per meter, a cut-off is one
    ``disconnect`` line (so cut-offs and reconnections alternate), a prompt one line, and no
    acknowledgement of a routine credit-state update."""
    lines = [line.split() for line in out.splitlines() if line.startswith("  event  ")]
    assert lines, out
    assert not [x for x in lines if x[2] == "command_ack"], "routine acknowledgements shown"
    relay: dict[str, list[str]] = {}
    for _, _, kind, meter, *_ in (x for x in lines if len(x) > 3):
        if kind in ("disconnect", "reconnect"):
            relay.setdefault(meter, []).append(kind)
        assert kind != "prompt", f"{meter}: the prompt the hub decided is shown twice"
    for meter, kinds in relay.items():
        assert all(a != b for a, b in itertools.pairwise(kinds)), (meter, kinds)


def assert_bob_saw_his_cut_off(out: str) -> None:
    """bob's own key read his notifications when he was cut off: the cut-off, newest first,
    and a top-up above zero that would reconnect him (issue 15, item 6)."""
    head = "bob's notifications when he was cut off, read with his own key:"
    assert head in out, out
    lines = out.split(head, 1)[1].splitlines()[1:]
    notices = [
        line.split() for line in itertools.takewhile(lambda x: x.startswith("  notice"), lines)
    ]
    assert notices and notices[0][1:3] == ["disconnect", "m-bob"], lines
    offer = lines[len(notices)].split()
    assert offer[0] == "balance" and offer[offer.index("of") + 1] != "0.00", offer
