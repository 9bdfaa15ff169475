"""Trigger fixtures: webhook/schedule workflows, and one real Celery worker per test module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accounts.models import User
from tests.executions.conftest import EngineProcesses, engine_processes
from workflows.models import Workflow
from workflows.services import workflow_create


def trigger_graph(trigger: dict[str, Any], fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trigger `t` followed by one transform `shape` (the single leaf)."""
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": trigger},
            {
                "id": "shape",
                "type": "transform",
                "params": {"fields": fields or {"total": "{{ input.body.a + input.body.b }}"}},
            },
        ],
        "edges": [{"source": "t", "target": "shape"}],
    }


def webhook_workflow(owner: User, *, active: bool = True, **trigger: Any) -> Workflow:
    """An active webhook workflow created through the services (so its token is armed)."""
    fields = trigger.pop("fields", None)
    return workflow_create(
        owner=owner,
        name="hook",
        graph=trigger_graph({"mode": "webhook", **trigger}, fields),
        active=active,
    )


@pytest.fixture(scope="module")
def trigger_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[EngineProcesses]:
    """One real prefork Celery worker on the test database, shared by a module's tests."""
    with engine_processes(django_db_blocker) as processes:
        processes.worker()
        yield processes
