"""Fixtures for ingest tests: a migrated SQLite file, a seeded world, a running service."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.ingest import IngestService
from tests.conftest import Broker
from tests.hub.seed import World, seed_world


@pytest.fixture
def world(sqlite_engine: Engine) -> World:
    return seed_world(sqlite_engine, gateways=2, meters_per_gateway=2)


@pytest.fixture
def start_service(
    mosquitto: Broker,
) -> Iterator[Callable[..., IngestService]]:
    """``start_service(engine, **options)``: a started IngestService, stopped after the test."""
    started: list[IngestService] = []

    def start(engine: Engine, **options: Any) -> IngestService:
        options.setdefault("client_id", f"hub-{len(started)}")
        options.setdefault("batch_wait_s", 0.02)
        service = IngestService(engine, mosquitto.url, **options)
        service.start()
        started.append(service)
        assert service.wait_connected(10)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.stop()
