"""MQTT ingest: usage, events and status in; batched ledger postings and signed
credit commands out. See README.md in this directory for ordering and no-loss guarantees.

``IngestService`` is imported on first use, so the pump process (``python -m
hub.ingest.transport.pump``), which needs only paho, starts without loading the database
layer. The processes and their messages are in ``hub.ingest.transport``; settling is here."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.ingest.service import IngestService

__all__ = ["IngestService"]


def __getattr__(name: str) -> Any:
    if name == "IngestService":
        from hub.ingest.service import IngestService  # noqa: PLC0415 (deferred on purpose)

        return IngestService
    raise AttributeError(f"module 'hub.ingest' has no attribute {name!r}")
