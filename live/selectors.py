"""Permission-scoped reads the live streams and the live page need.

Who may see an execution is decided by `executions.selectors.execution_get_for_user` alone.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accounts.models import User
from autoflow.exceptions import NotFound
from executions.models import Execution, NodeRunStatus
from executions.selectors import execution_get_for_user
from executions.statements import log_lines_of
from live.layout import graph_layout
from workflows.models import Workflow
from workflows.selectors import workflow_get_for_user

SNAPSHOT_FIELDS = ("id", "workflow_id", "status", "duration_ms", "output", "next_log_seq")


@dataclass(frozen=True)
class ExecutionSnapshot:
    """What a subscription needs to know about an execution at one moment."""

    execution_id: str
    workflow_id: str
    status: str
    is_terminal: bool
    last_seq: int
    duration_ms: int | None
    output: Any


def last_seq_of(execution: Execution) -> int:
    """The highest log seq stored for the execution (0 when it has logged nothing).

    Every line takes its seq from the row's counter in the same statement (or transaction)
    that stores it, so the counter is one past the last stored line in any snapshot.
    """
    return max(execution.next_log_seq - 1, 0)


def snapshot_of(execution: Execution) -> ExecutionSnapshot:
    return ExecutionSnapshot(
        execution_id=str(execution.pk),
        workflow_id=str(execution.workflow_id),
        status=execution.status,
        is_terminal=execution.is_terminal,
        last_seq=last_seq_of(execution),
        duration_ms=execution.duration_ms,
        output=execution.output,
    )


def execution_snapshot_for_user(
    *, user: User, execution_id: uuid.UUID | str
) -> ExecutionSnapshot | None:
    """A visible execution's snapshot, from the one statement that checks it; else None."""
    try:
        return snapshot_of(execution_get_for_user(user=user, execution_id=execution_id))
    except NotFound:
        return None


def execution_snapshots(*, execution_ids: list[str]) -> dict[str, ExecutionSnapshot]:
    """Snapshots of many executions in one query, keyed by id; gone ones are left out."""
    rows = Execution.objects.filter(pk__in=execution_ids).only(*SNAPSHOT_FIELDS)
    return {str(row.pk): snapshot_of(row) for row in rows}


def execution_log_lines(
    *, execution_id: uuid.UUID | str, after_seq: int, up_to_seq: int, limit: int
) -> list[dict[str, Any]]:
    """Stored lines with `after_seq < seq <= up_to_seq`, oldest first, at most `limit`.

    Each in SPEC.md's shape: `{seq, ts, level, node_id, message, data}`.
    """
    lines = log_lines_of(execution_id, after_seq=after_seq, up_to_seq=up_to_seq, limit=limit)
    for line in lines:
        line["ts"] = line["ts"].isoformat()
    return lines


def workflow_visible_to(*, user: User, workflow_id: uuid.UUID | str) -> Workflow | None:
    """The workflow when the caller may see it, else None."""
    try:
        return workflow_get_for_user(user=user, workflow_id=workflow_id)
    except NotFound:
        return None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _duration_ms(started: datetime | None, finished: datetime | None) -> int | None:
    if started is None or finished is None:
        return None
    return max(0, int((finished - started).total_seconds() * 1000))


def execution_live_state(*, execution: Execution) -> dict[str, Any]:
    """What the live page draws: the execution, its laid-out graph and each node's state."""
    node_runs = {node_run.node_id: node_run for node_run in execution.node_runs.all()}
    layout = graph_layout(execution.version.graph or {})
    nodes: list[dict[str, Any]] = []
    for placed in layout["nodes"]:
        node_run = node_runs.get(placed["id"])
        nodes.append(
            {
                "node_id": placed["id"],
                "type": placed["type"],
                "status": node_run.status if node_run else NodeRunStatus.PENDING.value,
                "attempts": node_run.attempts if node_run else 0,
                "started_at": _iso(node_run.started_at) if node_run else None,
                "finished_at": _iso(node_run.finished_at) if node_run else None,
                "duration_ms": (
                    _duration_ms(node_run.started_at, node_run.finished_at) if node_run else None
                ),
                "cached": node_run.cached if node_run else False,
                "error": node_run.error if node_run else None,
            }
        )
    return {
        "execution": {
            "id": str(execution.pk),
            "workflow": str(execution.workflow_id),
            "workflow_name": execution.workflow.name,
            "workflow_version": execution.workflow_version,
            "status": execution.status,
            "trigger": execution.trigger,
            "created_at": _iso(execution.created_at),
            "started_at": _iso(execution.started_at),
            "finished_at": _iso(execution.finished_at),
            "duration_ms": execution.duration_ms,
            "error": execution.error,
        },
        "layout": layout,
        "nodes": nodes,
        "last_seq": last_seq_of(execution),
    }
