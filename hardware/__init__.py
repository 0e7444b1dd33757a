"""Meter and relay models as data: register maps in ``registers/*.toml`` and their codec."""
