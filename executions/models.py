"""Executions: one run of a workflow graph, its node runs, its log, and run bookkeeping."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ExecutionStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
ACTIVE_STATUSES = frozenset(
    {ExecutionStatus.QUEUED, ExecutionStatus.RUNNING, ExecutionStatus.WAITING}
)


class ExecutionTrigger(models.TextChoices):
    MANUAL = "manual"
    WEBHOOK = "webhook"
    SCHEDULE = "schedule"
    RETRY = "retry"


class NodeRunStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


# The node-run columns the engine moves as a run progresses (what a checkpoint writes).
NODE_RUN_STATE_FIELDS = (
    "status",
    "attempts",
    "started_at",
    "finished_at",
    "output",
    "error",
    "cached",
    "branch",
    "next_attempt_at",
    "wait_kind",
)


class Execution(models.Model):
    """One run of a workflow version; the database row is the run's state of record."""

    TERMINAL: ClassVar[frozenset[str]] = TERMINAL_STATUSES

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: `execution_workflow_created` and `execution_workflow_status` lead
    # with it, and every index is one more entry for each version of the row (three per run).
    workflow = models.ForeignKey(
        "workflows.Workflow", on_delete=models.CASCADE, related_name="executions", db_index=False
    )
    workflow_version = models.PositiveIntegerField()
    # The graph snapshot this run follows; RESTRICT keeps it unless its workflow goes too.
    version = models.ForeignKey(
        "workflows.WorkflowVersion", on_delete=models.RESTRICT, related_name="executions"
    )
    status = models.CharField(
        max_length=16, choices=ExecutionStatus.choices, default=ExecutionStatus.QUEUED
    )
    trigger = models.CharField(max_length=16, choices=ExecutionTrigger.choices)
    input = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="executions",
    )
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    # Run bookkeeping: who holds the run (lease + heartbeat), when to wake, how often it was lost.
    lease_owner = models.CharField(max_length=128, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    wake_at = models.DateTimeField(null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    recovery_count = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    next_log_seq = models.PositiveBigIntegerField(default=1)
    # The Redis pub/sub channel of the web process waiting to answer with this run's end (a
    # webhook with `respond: "on_complete"`); the worker publishes the end there.
    notify_channel = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=["workflow", "-created_at"], name="execution_workflow_created"),
            models.Index(fields=["workflow", "status"], name="execution_workflow_status"),
            models.Index(fields=["status", "-created_at"], name="execution_status_created"),
            models.Index(fields=["-created_at"], name="execution_created"),
            # The sweeper's three questions, each answered from a small partial index.
            models.Index(
                fields=["wake_at"], condition=Q(status="waiting"), name="execution_waiting_wake"
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=Q(status="running"),
                name="execution_running_lease",
            ),
            models.Index(
                fields=["enqueued_at"], condition=Q(status="queued"), name="execution_queued"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class NodeRun(models.Model):
    """One node's run inside an execution, with its attempts so far."""

    # Indexed by `noderun_unique_node`, which leads with it.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="node_runs", db_index=False
    )
    node_id = models.CharField(max_length=200)
    type = models.CharField(max_length=64)
    position = models.PositiveIntegerField(default=0)
    status = models.CharField(
        max_length=16, choices=NodeRunStatus.choices, default=NodeRunStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    cached = models.BooleanField(default=False)
    # The branch a condition took, so a resumed run propagates skips the same way.
    branch = models.CharField(max_length=32, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Why a waiting node waits: "retry" (back-off) or "resume" (the node asked to be resumed).
    wait_kind = models.CharField(max_length=8, blank=True, default="")

    class Meta:
        ordering = ("position",)
        constraints = [
            models.UniqueConstraint(fields=["execution", "node_id"], name="noderun_unique_node")
        ]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.status})"


class LogLevel(models.TextChoices):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class ExecutionLog(models.Model):
    """One log line of an execution; `seq` counts from 1 without gaps."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by `executionlog_unique_seq`, which leads with it.
    execution = models.ForeignKey(
        Execution, on_delete=models.CASCADE, related_name="logs", db_index=False
    )
    seq = models.PositiveBigIntegerField()
    ts = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    # Null for execution-level lines: the SPEC's shape says `node_id: null`, not "".
    node_id = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    message = models.TextField()
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ("execution", "seq")
        constraints = [
            models.UniqueConstraint(fields=["execution", "seq"], name="executionlog_unique_seq")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.message[:60]}"


class IdempotencyRecord(models.Model):
    """The first answer to an Idempotency-Key, replayed for 24 hours."""

    scope = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    body = models.JSONField(default=dict)
    execution = models.ForeignKey(
        Execution, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_unique_key")
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.scope}:{self.key}"


class NodeResultCache(models.Model):
    """A cached node output, keyed by a hash of type + rendered params + inputs."""

    key = models.CharField(max_length=64, unique=True)
    output = models.JSONField(null=True)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["expires_at"], name="noderesultcache_expires")]

    def __str__(self) -> str:
        return self.key
