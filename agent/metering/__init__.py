"""Metering: register readings into usage intervals (pure) and their persisted state."""
