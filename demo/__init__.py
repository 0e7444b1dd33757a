"""``smsa-demo``: the system on one machine (for now: simulated meters read over Modbus)."""
