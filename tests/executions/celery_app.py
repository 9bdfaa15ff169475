"""The Celery app the end-to-end worker runs: AutoFlow's, plus the test-only node types."""

from autoflow.celery import app
from tests.executions import nodetypes  # noqa: F401 - registers the test node types

__all__ = ["app"]
