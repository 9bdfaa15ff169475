"""The ASGI app the scale-out web processes serve: AutoFlow's, plus the test-only node types."""

from autoflow.asgi import application
from tests.executions import nodetypes  # noqa: F401 - registers the test node types

__all__ = ["application"]
