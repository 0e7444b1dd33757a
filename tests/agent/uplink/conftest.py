"""Uplink fixtures: a broker whose persistence works, and a subscriber on it that answers what
it receives with signed receipts, as the hub does once it has settled them."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.uplink.helpers import KEY, Broker, Subscriber
from tests.support import free_port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker("127.0.0.1", free_port(), tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(broker, receipt_key=KEY)
    try:
        yield sub
    finally:
        sub.close()
