"""Modbus side of the agent: block planning (pure), one bus owner per line, the poller."""
