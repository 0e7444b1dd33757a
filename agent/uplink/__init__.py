"""The agent's uplink: a durable SQLite outbox and the MQTT client that drains it."""
