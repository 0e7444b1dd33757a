"""Fixtures of the fuzz tests: the agent tests' process set (real simulator and agent)."""

from tests.agent.conftest import procs

__all__ = ["procs"]
