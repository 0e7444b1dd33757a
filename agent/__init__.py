"""SMSA edge agent: polls meters over Modbus, enforces prepaid credit, reports usage over MQTT."""
