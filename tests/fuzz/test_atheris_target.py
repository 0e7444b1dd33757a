"""The atheris fuzz target (tests/fuzz/atheris_payloads.py): over the seeded mutated corpus and
hypothesis's payloads always; under atheris itself, briefly, when it is installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from protocol.receipts import build_receipt
from protocol.signing import signed
from tests.fuzz.atheris_payloads import KEY, one_input
from tests.fuzz.payloads import (
    NOW,
    any_payload,
    command_seed,
    corpus,
    events_seed,
    status_seed,
    usage_seed,
)

SEEDS = [usage_seed(), events_seed(), status_seed(), signed(command_seed(), KEY),
         build_receipt(KEY, "gw-1", at=NOW, usage={"m1": [1, 2, 3]}, events=["ev-1"])]  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def test_the_target_over_the_mutated_corpus() -> None:
    for _, payload in corpus(7, 3000, SEEDS):
        one_input(payload)


@settings(max_examples=200, deadline=None)
@given(payload=any_payload(SEEDS))
def test_the_target_over_hypothesis_payloads(payload: bytes) -> None:
    one_input(payload)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_the_target_under_atheris() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_payloads", "-atheris_runs=5000"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
