"""Fixtures for the fault tests: the engine's real worker processes, reused."""

from tests.executions.conftest import (  # noqa: F401 - fixtures are found by name
    engine,
    fast_engine,
    running_engine,
)
