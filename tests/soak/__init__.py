"""The seeded fault-injection soak: ``python -m tests.soak --seed N --minutes M`` (README.md)."""
