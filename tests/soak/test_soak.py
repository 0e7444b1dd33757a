"""The soak in CI: three seeds of two minutes each, run at the same time (one harness process
each), with every fault kind, no violation, and not a watt-hour lost or charged twice."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.soak.schedule import KINDS
from tests.soak.world import FAKETIME_LIB, MAX_OUTBOX_ROWS

SEEDS = (1, 2, 3)
MINUTES = 2

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial,
    pytest.mark.skipif(not Path(FAKETIME_LIB).exists(), reason="needs libfaketime (faketime)"),
]


@pytest.mark.timeout(900)
def test_three_seeds_hold_every_invariant(tmp_path: Path) -> None:
    runs = {}
    for seed in SEEDS:
        work = tmp_path / f"seed-{seed}"
        work.mkdir()
        args = ["--seed", str(seed), "--minutes", str(MINUTES), "--work", str(work),
                "--json", str(work / "summary.json")]  # fmt: skip
        out = (work / "out.txt").open("wb")
        runs[seed] = (work, subprocess.Popen([sys.executable, "-m", "tests.soak", *args],
                                             stdout=out, stderr=subprocess.STDOUT))  # fmt: skip
        out.close()
    try:
        codes = {seed: proc.wait(800) for seed, (_, proc) in runs.items()}
    finally:
        for _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for seed, (work, _) in runs.items():
        text = (work / "out.txt").read_text(errors="replace")
        assert text.startswith(f"seed {seed}\n"), text[:200]
        assert codes[seed] == 0, text[-4000:]
        summary = json.loads((work / "summary.json").read_text())
        assert summary["violations"] == []
        assert set(summary["faults"]) == set(KINDS), summary["faults"]
        assert summary["meters"] >= 50 and summary["gateways"] >= 4
        assert summary["records"] > 0 and summary["energy_wh"] > 0
        assert max(summary["outbox_peak"].values()) >= MAX_OUTBOX_ROWS  # a disk "full"
