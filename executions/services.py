"""Execution writes: start, run (one task's worth), cancel, retry, delete, and the sweeper.

Public entry point for every trigger (API, webhooks, schedules, admin, shell):

    execution_start(*, workflow, trigger, input, user, idempotency_key=None,
                    idempotency_scope=None) -> tuple[Execution, bool]

It stores the execution (queued) with one pending node run per node, enqueues
`run_execution_task` after commit, and returns `(execution, created)`. With an
`idempotency_key`, the first call's execution is returned with `created=False` for 24 hours
(scope defaults to `user:<user id>`; webhooks pass `webhook:<token>`); the same key with a
different workflow or input raises `IdempotencyConflict`.

Every status transition is one conditional UPDATE (`WHERE status = ... [AND lease_owner = me]`),
so a late or duplicate worker can never move an execution out of a terminal state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from autoflow.bounded import BoundedCache
from autoflow.exceptions import IdempotencyConflict, InvalidState, ValidationFailed
from autoflow.storable import unstorable
from executions import events, leases, statements
from executions.executor import (
    Executor,
    LeaseLost,
    LogLine,
    NodeState,
    Outcome,
    Plan,
    plan_build,
    to_json,
)
from executions.models import (
    NODE_RUN_STATE_FIELDS,
    TERMINAL_STATUSES,
    Execution,
    ExecutionStatus,
    ExecutionTrigger,
    IdempotencyRecord,
    NodeResultCache,
    NodeRun,
    NodeRunStatus,
)
from workflows.models import Workflow, WorkflowVersion

logger = logging.getLogger(__name__)

IDEMPOTENCY_TTL = dt.timedelta(hours=24)
SWEEP_BATCH = 500
# The process-wide "worker is shutting down" flag, set by the worker's shutdown signal.
shutdown_requested = threading.Event()


# --- Enqueueing ------------------------------------------------------------------------------


_publish_connections: dict[str, Any] = {}


def _publish_connection() -> Any:
    """A broker connection for enqueueing that tries a down broker once, not for ~6 s.

    Only this path fails fast (the caller answers 202 and the sweeper enqueues later); the
    worker's and beat's own connections keep kombu's reconnect retries, so they come back by
    themselves after a broker restart.
    """
    from autoflow.celery import app

    url = app.conf.broker_url
    if url not in _publish_connections:
        options = {**(app.conf.broker_transport_options or {}), "max_retries": 0}
        _publish_connections[url] = app.connection_for_write(transport_options=options)
    return _publish_connections[url]


class _ThreadProducer(threading.local):
    """This thread's producer of run tasks, on a broker connection of its own (`_enqueue_now`)."""

    pid = 0
    producer: Any = None
    declare: tuple[Any, ...] = ()


_thread_producer = _ThreadProducer()


def _producer(task_name: str) -> tuple[Any, tuple[Any, ...]]:
    """This thread's producer, and the queue Celery routes `task_name` to bound to its channel,
    made on first use."""
    from autoflow.celery import app

    if _thread_producer.producer is None or _thread_producer.pid != os.getpid():
        producer = app.amqp.Producer(_publish_connection().clone())
        channel: Any = producer.channel  # connects: a broker outage raises here
        queue = app.amqp.router.route({}, task_name)["queue"].bind(channel)
        _thread_producer.producer, _thread_producer.declare = producer, (queue,)
        _thread_producer.pid = os.getpid()
    return _thread_producer.producer, _thread_producer.declare


def _drop_producer() -> None:
    """Forget this thread's producer (a publish failed); the next publish builds another."""
    producer = _thread_producer.producer
    _thread_producer.producer, _thread_producer.declare = None, ()
    if producer is not None and _thread_producer.pid == os.getpid():
        with contextlib.suppress(Exception):  # it failed already; closing is best-effort
            producer.connection.release()


def _enqueue_now(execution_id: str, countdown: float | None = None) -> bool:
    """Publish a run task; a broker outage is logged (the sweeper enqueues it later).

    Each thread publishes through a producer of its own, kept until a publish fails (then the
    next builds a new one): acquiring one from kombu's pool copied its exchange for every
    publish, and declaring the queue through Celery copied the queue and its exchange to bind
    them, only to find them declared already; the queue here is bound to the producer's
    channel once, and declared once per connection as before (~55 µs of ~200 per publish).
    """
    from executions.tasks import run_execution_task

    try:
        # The task's `argsrepr`, written here: Celery's own `saferepr` of the arguments was
        # half of the publish's CPU on the web process.
        options: dict[str, Any] = {
            "retry": False,
            "ignore_result": True,
            "argsrepr": repr((execution_id,)),
            "kwargsrepr": "{}",
        }
        if countdown is not None:
            options["countdown"] = countdown
        producer, declare = _producer(run_execution_task.name)
        options["declare"] = list(declare)
        run_execution_task.apply_async((execution_id,), producer=producer, **options)
    except Exception:  # kombu/redis raise many types; the database stays the queue of record
        _drop_producer()
        logger.warning(
            "could not enqueue execution %s; the sweeper will", execution_id, exc_info=True
        )
        return False
    return True


def execution_enqueue_on_commit(*, execution_id: object, countdown: float | None = None) -> None:
    """Enqueue the run once the current transaction commits (no task before its row)."""
    transaction.on_commit(lambda: _enqueue_now(str(execution_id), countdown))


# --- Start -----------------------------------------------------------------------------------


class WorkflowChanged(Exception):
    """The workflow's row no longer has the values a start was told to expect: nothing started."""


OWNED_STARTS_MAX = 4096
# (workflow id as text, owner id) -> the workflow's id and the version its owner last started
# here. An owner's next execute reads no workflow row (~0.2 ms of its request): its start
# expects the row to still be that version of that owner's workflow (`only_if`), and a
# workflow changed, deleted or given away since is read, and its permissions checked, again.
_owned_starts: BoundedCache[tuple[str, Any], tuple[Any, int]] = BoundedCache(OWNED_STARTS_MAX)


def owned_workflow_known(
    *, user: User, workflow_id: object
) -> tuple[Workflow, dict[str, Any]] | None:
    """The workflow as the user, its owner, last started it here, and what a start from it
    expects of its row (`only_if`); None when there is none."""
    known = _owned_starts.get((str(workflow_id), user.pk))
    if known is None:
        return None
    expected = {"id": known[0], "version": known[1], "owner_id": user.pk}
    return Workflow.known(expected), expected


def owned_workflow_started(*, user: User, workflow: Workflow) -> None:
    """Note a start of a workflow read from its row, when the user owns it."""
    if workflow.owner_id == user.pk:
        _owned_starts.put((str(workflow.pk), user.pk), (workflow.pk, workflow.version))


def owned_workflow_forget(*, user: User, workflow_id: object) -> None:
    _owned_starts.discard((str(workflow_id), user.pk))


# (workflow id, version number) -> version row id: version rows never change once written.
VERSION_ID_CACHE_SIZE = 4096
_version_ids: BoundedCache[tuple[Any, int], int] = BoundedCache(VERSION_ID_CACHE_SIZE)


def _version_for(workflow: Workflow, version: int | None = None) -> WorkflowVersion:
    """The stored version row to run (the workflow's current one unless told otherwise).

    A row seen before comes back as a reference (id and number, no graph: the plan cache
    has it), sparing every start a query.
    """
    number = workflow.version if version is None else version
    known = _version_ids.get((workflow.pk, number))
    if known is not None:
        return WorkflowVersion(pk=known, workflow=workflow, version=number)
    found = WorkflowVersion.objects.filter(workflow=workflow, version=number).first()
    if found is not None:
        _version_ids.put((workflow.pk, number), found.pk)
        return found
    if number != workflow.version:
        raise InvalidState(f"Version {number} of this workflow no longer exists.")
    # A workflow written outside the services (fixtures, data imports) may lack its row.
    found, _ = WorkflowVersion.objects.get_or_create(
        workflow=workflow,
        version=number,
        defaults={
            "name": workflow.name,
            "description": workflow.description,
            "graph": workflow.graph,
            "tags": workflow.tags,
        },
    )
    return found


def _request_hash(workflow: Workflow, input: Any) -> str:
    material = to_json({"workflow": str(workflow.pk), "input": input})
    return hashlib.sha256(material.encode()).hexdigest()


# What a retry takes over from a node run that succeeded before (its status: succeeded).
REUSED_NODE_RUN_FIELDS = ("attempts", "started_at", "finished_at", "output", "cached", "branch")


def _create_execution(
    *,
    workflow: Workflow,
    version: WorkflowVersion,
    trigger: str,
    input: dict[str, Any],
    user: User | None,
    retry_of: Execution | None = None,
    reuse: Mapping[str, NodeRun] | None = None,
    execution_id: uuid.UUID | None = None,
    notify_channel: str = "",
    only_if: Mapping[str, Any] | None = None,
) -> Execution:
    # A reference from the id cache (never loaded: `adding`) has no graph of its own.
    plan = _plan_cached(
        (version.pk, workflow.pk),
        lambda: _version_graph(version.pk) if version._state.adding else version.graph,
    )
    now = timezone.now()
    # The first log line's seq is taken here, so the row is written once (no counter UPDATE).
    execution = Execution(
        id=execution_id or uuid.uuid4(),
        next_log_seq=2,
        workflow=workflow,
        workflow_version=version.version,
        version=version,
        trigger=trigger,
        input=input,
        created_by=user,
        retry_of=retry_of,
        created_at=now,
        enqueued_at=now,
        notify_channel=notify_channel,
        deadline_at=(
            None
            if plan.timeout_seconds is None
            else now + dt.timedelta(seconds=plan.timeout_seconds)
        ),
    )
    runs = []
    for position, node_id in enumerate(plan.order):
        previous = (reuse or {}).get(node_id)
        node_type = plan.nodes[node_id].type
        run = {
            "execution_id": execution.pk,
            "node_id": node_id,
            "type": node_type,
            "position": position,
        }
        if previous is not None and previous.type == node_type:
            run["status"] = NodeRunStatus.SUCCEEDED
            run.update({name: getattr(previous, name) for name in REUSED_NODE_RUN_FIELDS})
        runs.append(run)
    reused = [run["node_id"] for run in runs if run.get("status") == NodeRunStatus.SUCCEEDED]
    message = "Execution queued"
    data: dict[str, Any] = {"trigger": trigger, "workflow_version": version.version}
    if retry_of is not None:
        message = f"Execution queued as a retry of {retry_of.pk}"
        data["retry_of"] = str(retry_of.pk)
    if reused:
        data["reused_nodes"] = reused
    first = LogLine(ts=now, level="info", node_id=None, message=message, data=data)
    # One statement on PostgreSQL (atomic on its own): an execute or a webhook call's insert
    # is one round trip, not five with its transaction's BEGIN and COMMIT.
    first_lines = [{"seq": 1, **_log_values(execution.pk, first)}]
    if not statements.insert_run(execution, runs, first_lines, only_if=only_if):
        raise WorkflowChanged()
    # The first line is not published: nobody can be subscribed to a run that did not exist
    # (its id is new), and a subscription begins at the lines already stored (`last_seq`).
    # Publishing it cost the web process a Redis round trip and a wake-up of its publisher
    # thread per execute or webhook call, to find the group empty.
    execution_enqueue_on_commit(execution_id=execution.pk)
    return execution


def execution_start(
    *,
    workflow: Workflow,
    trigger: str,
    input: dict[str, Any] | None,
    user: User | None,
    idempotency_key: str | None = None,
    idempotency_scope: str | None = None,
    execution_id: uuid.UUID | None = None,
    notify_channel: str = "",
    only_if: Mapping[str, Any] | None = None,
) -> tuple[Execution, bool]:
    """Queue an execution of the workflow's current version; see the module docstring.

    `execution_id` lets a caller subscribe to the run's events before it exists (a replay
    returns the first call's execution, with its own id). The run's end is also published on
    `notify_channel`, when given (`executions.completions`). An input holding a NUL character
    or a number that is not finite is refused (`ValidationFailed`): the database could not
    store it (`autoflow.storable`). With `only_if` (values of the workflow's fields, as the
    caller read them), nothing starts unless its row still has them: `WorkflowChanged`.
    """
    payload = dict(input or {})
    found = unstorable(payload)
    if found:
        raise ValidationFailed(
            f"The input holds {found}, which cannot be stored.",
            details={"input": [f"It holds {found}."]},
        )

    def create() -> Execution:
        return _create_execution(
            workflow=workflow,
            version=_version_for(workflow),
            trigger=trigger,
            input=payload,
            user=user,
            execution_id=execution_id,
            notify_channel=notify_channel,
            only_if=only_if,
        )

    if not idempotency_key:
        return create(), True
    scope = idempotency_scope or f"user:{user.pk if user else 'anonymous'}"
    request_hash = _request_hash(workflow, payload)
    for _ in range(3):  # bounded: a concurrent first request wins, then we replay it
        try:
            with transaction.atomic():
                replay = _idempotent_replay(scope, idempotency_key, request_hash)
                if replay is not None:
                    return replay, False
                execution = create()
                IdempotencyRecord.objects.create(
                    scope=scope,
                    key=idempotency_key,
                    request_hash=request_hash,
                    status=202,
                    body={"execution_id": str(execution.pk), "status": ExecutionStatus.QUEUED},
                    execution=execution,
                )
                return execution, True
        except IntegrityError:
            continue
    raise IdempotencyConflict("This Idempotency-Key is being used by a concurrent request.")


def _idempotent_replay(scope: str, key: str, request_hash: str) -> Execution | None:
    record = (
        IdempotencyRecord.objects.select_for_update(of=("self",))
        .select_related("execution")
        .filter(scope=scope, key=key)
        .first()
    )
    if record is None:
        return None
    expired = record.created_at < timezone.now() - IDEMPOTENCY_TTL
    if expired or record.execution is None:
        record.delete()
        return None
    if record.request_hash != request_hash:
        raise IdempotencyConflict()
    return record.execution


# --- Logs ------------------------------------------------------------------------------------


def _log_values(execution_id: Any, line: LogLine) -> dict[str, Any]:
    """A line's columns but its seq (`statements.LOG_VALUES`)."""
    return {
        "execution_id": execution_id,
        "ts": line.ts,
        "level": line.level,
        "node_id": line.node_id,
        "message": line.message,
        "data": line.data,
    }


def log_line_body(row: Mapping[str, Any]) -> dict[str, Any]:
    """The SPEC's log line shape, from a stored line's columns."""
    return {
        "seq": row["seq"],
        "ts": row["ts"].isoformat(),
        "level": row["level"],
        "node_id": row["node_id"],
        "message": row["message"],
        "data": row["data"],
    }


def _log_rows(execution_id: Any, lines: list[LogLine]) -> list[dict[str, Any]]:
    """Rows for the lines; `statements.write_run` numbers them."""
    return [_log_values(execution_id, line) for line in lines]


def _logs_messages(execution_id: Any, rows: list[dict[str, Any]]) -> list[events.Message]:
    return [events.logs_message(execution_id, [log_line_body(r) for r in rows])] if rows else []


def _append_logs(
    execution_id: Any,
    lines: list[LogLine],
    *,
    lease_owner: str | None = None,
    changes: Mapping[str, Any] | None = None,
) -> tuple[int, bool] | None:
    """Store lines with gap-free seqs (the counter row lock orders writers); publish after commit.

    `changes` are applied to the execution row in the same write (guarded by `lease_owner`
    when given), which returns `(next_log_seq, cancel_requested)`; None means the guard failed
    and nothing was written.
    """
    rows = _log_rows(execution_id, lines)
    returned = statements.write_run(
        execution_id, changes=changes or {}, logs=rows, lease_owner=lease_owner
    )
    if returned is not None:
        events.publish_on_commit(_logs_messages(execution_id, rows))
    return returned


# --- The database run store ------------------------------------------------------------------


def _node_state(row: Mapping[str, Any]) -> NodeState:
    state = {name: row[name] for name in NODE_RUN_STATE_FIELDS}
    return NodeState(node_id=row["node_id"], type=row["type"], **state)


class DatabaseRunStore:
    """The executor's store: every write is guarded by `status = running AND lease_owner = me`."""

    def __init__(
        self,
        *,
        execution: Execution,
        lease_owner: str,
        node_pks: dict[str, int],
        held: list[events.Message] | None = None,
    ) -> None:
        self.execution = execution
        self.lease_owner = lease_owner
        self.node_pks = node_pks
        self._cancel = execution.cancel_requested
        self.lost = threading.Event()
        # Messages published with the first write's (the claim's `running`, say): a publish
        # of their own would cost a round trip to Redis for what is at most a checkpoint away.
        self._held = list(held or [])

    # -- lease ----------------------------------------------------------------------------

    def _lease_until(self) -> dt.datetime:
        return timezone.now() + dt.timedelta(seconds=settings.EXECUTION_LEASE_SECONDS)

    def heartbeat(self) -> None:
        """Renew the lease and refresh the cancel flag (called from the heartbeat thread)."""
        renewed = Execution.objects.filter(
            pk=self.execution.pk, status=ExecutionStatus.RUNNING, lease_owner=self.lease_owner
        ).update(lease_expires_at=self._lease_until())
        if renewed == 0:
            self.lost.set()
            return
        flag = Execution.objects.filter(pk=self.execution.pk).values_list(
            "cancel_requested", flat=True
        )
        self._cancel = bool(flag and flag[0])

    def heartbeating(self) -> AbstractContextManager[None]:
        """Renew the lease while the block runs (`executions.leases`: one thread per process)."""
        interval = max(settings.EXECUTION_LEASE_SECONDS / 3, 0.5)
        return leases.keeper.holding(self, interval)

    # -- writes ---------------------------------------------------------------------------

    def _write(
        self, nodes: list[NodeState], logs: list[LogLine], **execution_changes: Any
    ) -> list[events.Message]:
        """Guarded write of node runs, log lines and execution fields (`statements.write_run`).

        Returns the messages to publish once it is committed: the lines, then node states.
        """
        changes = execution_changes or {"lease_expires_at": self._lease_until()}
        # Every node run exists (loaded at claim): only its state changes.
        runs = [
            {
                "id": self.node_pks[state.node_id],
                "execution_id": self.execution.pk,
                "node_id": state.node_id,
                "type": state.type,
                **{name: getattr(state, name) for name in NODE_RUN_STATE_FIELDS},
            }
            for state in nodes
        ]
        rows = _log_rows(self.execution.pk, logs)
        returned = statements.write_run(
            self.execution.pk,
            changes=changes,
            logs=rows,
            node_runs=runs,
            lease_owner=self.lease_owner,
        )
        if returned is None:
            raise LeaseLost
        # The same UPDATE read the cancel flag: no extra query to notice a cancel.
        self._cancel = self._cancel or bool(returned[1])
        held, self._held = self._held, []
        return (
            held
            + _logs_messages(self.execution.pk, rows)
            + [
                events.status_message(
                    self.execution.pk,
                    ExecutionStatus.RUNNING,
                    node_id=state.node_id,
                    node_status=state.status,
                )
                for state in nodes
            ]
        )

    def checkpoint(self, *, nodes: list[NodeState], logs: list[LogLine]) -> bool:
        events.publish_on_commit(self._write(nodes, logs))
        return self._cancel

    def finish(
        self,
        *,
        status: str,
        output: Any,
        error: dict[str, Any] | None,
        nodes: list[NodeState],
        logs: list[LogLine],
    ) -> None:
        now = timezone.now()
        started = self.execution.started_at or now
        duration_ms = max(int((now - started).total_seconds() * 1000), 0)
        messages = self._write(
            nodes,
            logs,
            status=status,
            output=output,
            error=error,
            finished_at=now,
            duration_ms=duration_ms,
            lease_owner="",
            lease_expires_at=None,
            wake_at=None,
        )
        messages.append(events.status_message(self.execution.pk, status))
        messages.append(
            events.complete_message(
                self.execution.pk,
                status,
                duration_ms,
                output,
                notify_channel=self.execution.notify_channel,
            )
        )
        if status == ExecutionStatus.FAILED:
            workflow = self.execution.workflow
            messages.append(
                events.failure_notification(
                    owner_id=workflow.owner_id,
                    execution_id=self.execution.pk,
                    workflow_id=workflow.pk,
                    workflow_name=workflow.name,
                    error=error,
                )
            )
        events.publish_on_commit(messages)

    def wait(self, *, wake_at: dt.datetime, nodes: list[NodeState], logs: list[LogLine]) -> None:
        with transaction.atomic():
            scheduled = _schedule_wake(self.execution.pk, wake_at)
            messages = self._write(
                nodes,
                logs,
                status=ExecutionStatus.WAITING,
                wake_at=wake_at,
                # A countdown task is due at `wake_at`; the sweeper steps in only if it is lost.
                enqueued_at=wake_at if scheduled else None,
                lease_owner="",
                lease_expires_at=None,
            )
            messages.append(events.status_message(self.execution.pk, ExecutionStatus.WAITING))
            events.publish_on_commit(messages)

    def release(self, *, nodes: list[NodeState], logs: list[LogLine]) -> None:
        # Shutting down: park the run as due now, for any worker to pick up at once.
        now = timezone.now()
        released = [
            *logs,
            LogLine(
                ts=now, level="info", node_id=None, message="Worker shutting down; run handed back"
            ),
        ]
        with transaction.atomic():
            messages = self._write(
                nodes,
                released,
                status=ExecutionStatus.WAITING,
                wake_at=now,
                enqueued_at=now,
                lease_owner="",
                lease_expires_at=None,
            )
            events.publish_on_commit(messages)
            execution_enqueue_on_commit(execution_id=self.execution.pk)

    # -- reads ----------------------------------------------------------------------------

    def cancel_requested(self) -> bool:
        return self._cancel

    def cache_get(self, key: str) -> tuple[bool, Any]:
        found = (
            NodeResultCache.objects.filter(key=key, expires_at__gt=timezone.now())
            .values("output")
            .first()
        )
        if found is None:
            return False, None
        return True, found["output"]

    def cache_put(self, key: str, output: Any, ttl_seconds: float) -> None:
        expires_at = timezone.now() + dt.timedelta(seconds=ttl_seconds)
        NodeResultCache.objects.update_or_create(
            key=key, defaults={"output": output, "expires_at": expires_at}
        )

    def credential(self, credential_id: str) -> tuple[Mapping[str, Any], list[str]] | None:
        from workflows.credentials import credential_data_for_run, credential_secret_values

        data = credential_data_for_run(
            owner_id=self.execution.workflow.owner_id, credential_id=credential_id
        )
        if data is None:
            return None
        return data, credential_secret_values(data)


def _schedule_wake(execution_id: object, wake_at: dt.datetime) -> bool:
    """Short waits ride a Celery countdown; long ones are left to the sweeper.

    Redis redelivers unacknowledged ETA tasks after the visibility timeout and workers hold
    them in memory, so long countdowns are the wrong tool.
    """
    delay = (wake_at - timezone.now()).total_seconds()
    if delay > settings.EXECUTION_COUNTDOWN_MAX_SECONDS:
        return False
    execution_enqueue_on_commit(execution_id=execution_id, countdown=max(delay, 0.0))
    return True


# --- Run -------------------------------------------------------------------------------------

PLAN_CACHE_SIZE = 256
# (version row id, workflow id) -> plan. The workflow id keeps a reused row id (SQLite after a
# rollback) from ever finding another workflow's plan.
_plans: BoundedCache[tuple[int, Any], Plan] = BoundedCache(PLAN_CACHE_SIZE)


def _plan_cached(key: tuple[int, Any], graph: Callable[[], Any]) -> Plan:
    """The plan of a stored version, parsed once per process (version rows never change)."""
    plan = _plans.get(key)
    if plan is None:
        plan = plan_build(graph())  # a graph that no longer parses raises, and is not cached
        _plans.put(key, plan)
    return plan


def _version_graph(version_id: int) -> Any:
    return WorkflowVersion.objects.values_list("graph", flat=True).get(pk=version_id)


def _new_lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _reschedule_unclaimed(execution_id: str) -> None:
    """A task that found nothing to claim: re-arm an early wake-up; anything else is not ours."""
    row = Execution.objects.filter(pk=execution_id).values("status", "wake_at").first()
    if row and row["status"] == ExecutionStatus.WAITING and row["wake_at"] is not None:
        delay = (row["wake_at"] - timezone.now()).total_seconds()
        if 0 < delay <= settings.EXECUTION_COUNTDOWN_MAX_SECONDS:
            _enqueue_now(execution_id, countdown=delay)


def execution_run(*, execution_id: str, heartbeat: bool = True) -> Outcome | None:
    """Claim the execution and advance it as far as it goes; idempotent, safe to repeat."""
    lease_owner = _new_lease_owner()
    claimed_at = timezone.now()
    # One statement claims the run and reads its row and node runs back. The version's graph
    # comes from the plan cache and the workflow only when needed (a failure notification, a
    # credential): loading and parsing their JSON costs every run.
    claimed = statements.claim_execution(
        execution_id,
        lease_owner=lease_owner,
        now=claimed_at,
        lease_expires_at=claimed_at + dt.timedelta(seconds=settings.EXECUTION_LEASE_SECONDS),
    )
    if claimed is None:
        _reschedule_unclaimed(execution_id)
        return None
    execution, rows = claimed
    # The claim is committed; its `running` status and these lines ride the run's first write
    # (a checkpoint before any side effect or within the executor's flush interval, a wait, the
    # finish) instead of a transaction and a publish of their own.
    store = DatabaseRunStore(
        execution=execution,
        lease_owner=lease_owner,
        node_pks={r["node_id"]: r["id"] for r in rows},
        held=[events.status_message(execution.pk, ExecutionStatus.RUNNING)],
    )
    nodes = {row["node_id"]: _node_state(row) for row in rows}
    lines = []
    if execution.recovery_count > 0:
        lines.append(
            LogLine(
                ts=timezone.now(),
                level="warning",
                node_id=None,
                message=f"Execution resumed after its worker was lost "
                f"({execution.recovery_count} time(s))",
            )
        )
    elif execution.started_at == claimed_at:
        lines.append(
            LogLine(ts=timezone.now(), level="info", node_id=None, message="Execution started")
        )
    try:
        if execution.recovery_count > settings.EXECUTION_MAX_RECOVERIES:
            return _fail_worker_lost(store, nodes, lines)
        try:
            plan = _plan_cached(
                (execution.version_id, execution.workflow_id),
                lambda: _version_graph(execution.version_id),
            )
        except Exception as error:  # a graph that no longer parses fails the run, not the task
            message = getattr(error, "message", None) or str(error)
            store.finish(
                status=ExecutionStatus.FAILED,
                output=None,
                error={
                    "code": "node_error",
                    "message": f"The graph cannot run: {message}",
                    "node_id": None,
                },
                nodes=[],
                logs=lines,
            )
            return Outcome(status=ExecutionStatus.FAILED)
        executor = Executor(
            plan=plan,
            execution_id=str(execution.pk),
            input=execution.input or {},
            nodes=nodes,
            store=store,
            deadline_at=execution.deadline_at,
            output_max_bytes=settings.NODE_OUTPUT_MAX_BYTES,
            should_stop=lambda: shutdown_requested.is_set() or store.lost.is_set(),
            logs=lines,
        )
        if heartbeat:
            with store.heartbeating():
                return executor.run()
        return executor.run()
    except LeaseLost:
        logger.info("execution %s: lease lost, another worker owns it now", execution_id)
        return None


def _fail_worker_lost(
    store: DatabaseRunStore, nodes: dict[str, NodeState], lines: list[LogLine]
) -> Outcome:
    now = timezone.now()
    error = {
        "code": "worker_lost",
        "message": f"The worker running this execution was lost more than "
        f"{settings.EXECUTION_MAX_RECOVERIES} times; giving up.",
        "node_id": None,
    }
    changed = []
    for state in nodes.values():
        if state.status in ("running", "waiting"):
            error["node_id"] = error["node_id"] or state.node_id
            state.status = "failed"
            state.error = {"code": "worker_lost", "message": error["message"]}
            state.finished_at = now
            changed.append(state)
    line = LogLine(
        ts=now, level="error", node_id=None, message=str(error["message"]), data={"error": error}
    )
    store.finish(
        status=ExecutionStatus.FAILED, output=None, error=error, nodes=changed, logs=[*lines, line]
    )
    return Outcome(status=ExecutionStatus.FAILED, error=error)


# --- Cancel, retry, delete -------------------------------------------------------------------


def execution_cancel(*, execution: Execution, by: User | None) -> str:
    """Cancel: queued or waiting stop at once; a running one stops before its next node.

    Returns the status to report: `cancelled`, or `running` while the worker winds down.
    """
    now = timezone.now()
    error = {"code": "cancelled", "message": "The execution was cancelled.", "node_id": None}
    who = f" by {by.email}" if by is not None else ""
    with transaction.atomic():
        stopped = Execution.objects.filter(
            pk=execution.pk, status__in=[ExecutionStatus.QUEUED, ExecutionStatus.WAITING]
        ).update(
            status=ExecutionStatus.CANCELLED,
            finished_at=now,
            error=error,
            wake_at=None,
            cancel_requested=True,
        )
        if stopped:
            NodeRun.objects.filter(
                execution=execution,
                status__in=[NodeRunStatus.PENDING, NodeRunStatus.WAITING, NodeRunStatus.RUNNING],
            ).update(
                status=NodeRunStatus.CANCELLED, finished_at=now, next_attempt_at=None, wait_kind=""
            )
            started = Execution.objects.filter(pk=execution.pk).values_list(
                "started_at", flat=True
            )[0]
            duration_ms = int((now - started).total_seconds() * 1000) if started else None
            Execution.objects.filter(pk=execution.pk).update(duration_ms=duration_ms)
            _append_logs(
                execution.pk,
                [
                    LogLine(
                        ts=now, level="warning", node_id=None, message=f"Execution cancelled{who}"
                    )
                ],
            )
            events.publish_on_commit(
                [
                    events.status_message(execution.pk, ExecutionStatus.CANCELLED),
                    events.complete_message(
                        execution.pk,
                        ExecutionStatus.CANCELLED,
                        duration_ms,
                        None,
                        notify_channel=execution.notify_channel,
                    ),
                ]
            )
            return ExecutionStatus.CANCELLED
        asked = Execution.objects.filter(pk=execution.pk, status=ExecutionStatus.RUNNING).update(
            cancel_requested=True
        )
        if asked:
            _append_logs(
                execution.pk,
                [LogLine(ts=now, level="warning", node_id=None, message=f"Cancel requested{who}")],
            )
            return ExecutionStatus.RUNNING
    raise InvalidState("Only a queued, running or waiting execution can be cancelled.")


def execution_retry(
    *, execution: Execution, by: User | None, from_failed_node: bool = False, version: str = "same"
) -> Execution:
    """Queue a new execution linked by `retry_of`; only a failed or cancelled one may be retried."""
    if execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        raise InvalidState("Only a failed or cancelled execution can be retried.")
    workflow = execution.workflow
    with transaction.atomic():
        version_row = _version_for(workflow) if version == "latest" else execution.version
        reuse: dict[str, NodeRun] = {}
        if from_failed_node:
            reuse = {
                run.node_id: run
                for run in execution.node_runs.filter(status=NodeRunStatus.SUCCEEDED)
            }
        return _create_execution(
            workflow=workflow,
            version=version_row,
            trigger=ExecutionTrigger.RETRY,
            input=execution.input or {},
            user=by,
            retry_of=execution,
            reuse=reuse,
        )


def execution_delete(*, execution: Execution) -> None:
    """Delete a finished execution with its node runs and log; 409 while it is active."""
    deleted, _ = Execution.objects.filter(pk=execution.pk, status__in=TERMINAL_STATUSES).delete()
    if deleted == 0:
        raise InvalidState("Only a finished execution can be deleted; cancel it first.")


# --- The sweeper -----------------------------------------------------------------------------


def executions_sweep() -> dict[str, int]:
    """Wake due waits, take over lapsed leases, re-enqueue queued runs nobody took; tidy up."""
    now = timezone.now()
    grace = dt.timedelta(seconds=1)
    stale_before = now - dt.timedelta(seconds=settings.EXECUTION_REQUEUE_AFTER_SECONDS)
    not_recently_enqueued = Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=stale_before)
    # Due waits whose countdown task (if any) is overdue: a busy worker's prefetched
    # countdowns are not re-sent every sweep, only lost ones.
    due = list(
        Execution.objects.filter(status=ExecutionStatus.WAITING, wake_at__lte=now - grace)
        .filter(not_recently_enqueued)
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    lost = list(
        Execution.objects.filter(
            status=ExecutionStatus.RUNNING, lease_expires_at__lt=now
        ).values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    stale = list(
        Execution.objects.filter(status=ExecutionStatus.QUEUED)
        .filter(not_recently_enqueued)
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    if due or stale:
        Execution.objects.filter(pk__in=[*due, *stale]).update(enqueued_at=now)
    enqueued = sum(_enqueue_now(str(pk)) for pk in [*due, *lost, *stale])
    IdempotencyRecord.objects.filter(created_at__lt=now - IDEMPOTENCY_TTL).delete()
    NodeResultCache.objects.filter(expires_at__lt=now).delete()
    counts = {"due": len(due), "lost": len(lost), "stale": len(stale), "enqueued": enqueued}
    if due or lost or stale:
        logger.info("execution sweep: %s", counts)
    return counts
