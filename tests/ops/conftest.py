"""Helpers for the ops tests: stored executions in any state, with node runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from accounts.models import User
from executions.models import Execution, NodeRun
from tests.executions.conftest import engine, fast_engine
from tests.factories import WorkflowFactory
from workflows.models import Workflow

__all__ = ["engine", "fast_engine"]


def make_workflow(owner: User, **fields: Any) -> Workflow:
    return WorkflowFactory.create(owner=owner, **fields)


def make_execution(
    workflow: Workflow,
    *,
    status: str = "succeeded",
    age: dt.timedelta = dt.timedelta(0),
    **fields: Any,
) -> Execution:
    """An execution created `age` ago; a finished one also finished then."""
    at = timezone.now() - age
    finished = status in ("succeeded", "failed", "cancelled")
    return Execution.objects.create(
        workflow=workflow,
        workflow_version=workflow.version,
        version=workflow.versions.get(version=workflow.version),
        status=status,
        trigger="manual",
        created_by=workflow.owner,
        created_at=at,
        started_at=at,
        finished_at=at if finished else None,
        **fields,
    )


def add_node_run(execution: Execution, node_id: str, **fields: Any) -> NodeRun:
    fields.setdefault("type", "debug")
    fields.setdefault("status", "succeeded")
    fields.setdefault("attempts", 1)
    return NodeRun.objects.create(execution=execution, node_id=node_id, **fields)
