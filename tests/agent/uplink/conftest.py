"""Uplink fixtures: a subscriber on the test's broker."""

from collections.abc import Iterator

import pytest

from tests.agent.uplink.helpers import Subscriber
from tests.conftest import Broker


@pytest.fixture
def subscriber(mosquitto: Broker) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto)
    try:
        yield sub
    finally:
        sub.close()
