"""MQTT ingest: usage, events and gateway status in; batched ledger postings and signed
credit commands out. See README.md in this directory for ordering and no-loss guarantees."""

from hub.ingest.service import IngestService

__all__ = ["IngestService"]
