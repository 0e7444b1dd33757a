"""Simulated Modbus energy meters (firmware_sim): any register map, physics, faults, line timing."""
