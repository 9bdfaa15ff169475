"""Permission-scoped reads of executions: users see runs of their own workflows, admins all."""

from __future__ import annotations

import math
import uuid
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from accounts.models import User
from autoflow.exceptions import NotFound
from executions import statements
from executions.models import (
    TERMINAL_STATUSES,
    Execution,
    ExecutionLog,
    ExecutionStatus,
)
from workflows.models import Workflow

LOGS_DEFAULT_LIMIT = 500
LOGS_MAX_LIMIT = 5000


def execution_list_for_user(*, user: User) -> QuerySet[Execution]:
    """Executions the caller may see: those of workflows they own (admins: all)."""
    queryset = Execution.objects.all()
    if user.is_staff:
        return queryset
    return queryset.filter(workflow__owner=user)


def execution_get_for_user(*, user: User, execution_id: uuid.UUID | str) -> Execution:
    """One visible execution (its row alone), else `NotFound`.

    The rule of `execution_list_for_user`, checked on the row read with its workflow's owner:
    clients poll this, and compiling the ORM's query with its join was most of a read.
    """
    found = statements.execution_and_owner(execution_id)
    if found is None or not _visible(user, found[1]):
        raise NotFound("Execution not found.")
    return found[0]


def execution_detail_for_user(*, user: User, execution_id: uuid.UUID | str) -> Execution:
    """One visible execution with its node runs (read in the same statement), else `NotFound`.

    The runs are left where `prefetch_related("node_runs")` leaves them, so
    `execution.node_runs.all()` reads them without a query.
    """
    found = statements.execution_owner_and_node_runs(execution_id)
    if found is None or not _visible(user, found[1]):
        raise NotFound("Execution not found.")
    execution, _, runs = found
    node_runs = execution.node_runs.all()
    node_runs._result_cache = runs
    execution._prefetched_objects_cache = {"node_runs": node_runs}  # type: ignore[attr-defined]
    return execution


def _visible(user: User, owner_id: Any) -> bool:
    return bool(user.is_staff or owner_id == user.pk)


def execution_logs(
    *, execution: Execution, after_seq: int = 0, limit: int = LOGS_DEFAULT_LIMIT
) -> tuple[list[dict[str, Any]], bool]:
    """Log lines after `after_seq` (dicts of their columns), in order, and whether more follow."""
    limit = max(1, min(limit, LOGS_MAX_LIMIT))
    rows = list(
        ExecutionLog.objects.filter(execution=execution, seq__gt=after_seq)
        .order_by("seq")
        .values(*statements.LOG_LINE_READ)[: limit + 1]
    )
    return rows[:limit], len(rows) > limit


def workflow_execution_stats(*, workflow: Workflow) -> dict[str, Any]:
    """Counts by status, success rate, mean and p95 duration, last execution: all in SQL."""
    executions = Execution.objects.filter(workflow=workflow)
    aggregates = executions.aggregate(
        total=Count("pk"),
        **{status: Count("pk", filter=Q(status=status)) for status in ExecutionStatus.values},
        avg_duration=Avg("duration_ms", filter=Q(status__in=TERMINAL_STATUSES)),
    )
    finished = sum(int(aggregates[status]) for status in TERMINAL_STATUSES)
    finished_with_duration = executions.filter(
        status__in=TERMINAL_STATUSES, duration_ms__isnull=False
    )
    timed = finished_with_duration.count() if finished else 0
    p95: int | None = None
    if timed:
        # Nearest-rank percentile, read straight from the ordered index by offset.
        rank = max(math.ceil(0.95 * timed), 1)
        ordered = finished_with_duration.order_by("duration_ms").values_list(
            "duration_ms", flat=True
        )
        p95 = next(iter(ordered[rank - 1 : rank]))
    last = executions.order_by("-created_at").values("id", "status", "created_at").first()
    avg = aggregates["avg_duration"]
    return {
        "total": aggregates["total"],
        "by_status": {status: aggregates[status] for status in ExecutionStatus.values},
        "success_rate": (aggregates[ExecutionStatus.SUCCEEDED] / finished if finished else None),
        "avg_duration_ms": None if avg is None else round(float(avg), 1),
        "p95_duration_ms": p95,
        "last_execution": last,
    }
