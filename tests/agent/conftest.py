"""Fixtures of the agent tests: the processes a test starts, a subscriber on the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Collector, Procs
from tests.conftest import Broker


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.stop_all()


@pytest.fixture
def collector(mosquitto: Broker) -> Iterator[Collector]:
    with Collector(mosquitto.port) as c:
        yield c
