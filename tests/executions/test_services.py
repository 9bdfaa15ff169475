"""Engine services against the real database, run in-process (no worker): one task's work."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.utils import timezone

from autoflow.celery import app as celery_app
from autoflow.exceptions import IdempotencyConflict, InvalidState
from executions import leases, services
from executions.models import Execution, ExecutionLog, NodeRun
from executions.selectors import workflow_execution_stats
from tests.executions.conftest import make_graph, make_workflow

pytestmark = pytest.mark.django_db


def chain(*nodes: dict, **settings) -> dict:
    ids = ["t", *[n["id"] for n in nodes]]
    return make_graph(list(nodes), list(itertools.pairwise(ids)), **settings)


def emit(node_id: str, value: object = None, **extra) -> dict:
    return {"id": node_id, "type": "test_emit", "params": {"value": value}, **extra}


def start(workflow, input=None, **kwargs) -> Execution:
    execution, _created = services.execution_start(
        workflow=workflow, trigger="manual", input=input or {}, user=workflow.owner, **kwargs
    )
    return execution


def run_to_end(execution: Execution, rounds: int = 20) -> Execution:
    """Run the task repeatedly (as countdowns would), jumping waits by making them due now."""
    for _ in range(rounds):
        services.execution_run(execution_id=str(execution.pk), heartbeat=False)
        execution.refresh_from_db()
        if execution.is_terminal:
            return execution
        if execution.status == "waiting":
            Execution.objects.filter(pk=execution.pk).update(wake_at=timezone.now())
            NodeRun.objects.filter(execution=execution, status="waiting").update(
                next_attempt_at=timezone.now()
            )
    raise AssertionError(f"still {execution.status}")


def test_start_creates_queued_execution_with_pending_node_runs(owner):
    workflow = make_workflow(owner, chain(emit("a", 1), emit("b", 2)))
    execution = start(workflow, {"x": 1})
    assert execution.status == "queued"
    assert execution.workflow_version == 1
    assert execution.trigger == "manual"
    assert execution.deadline_at is not None
    runs = list(execution.node_runs.values_list("node_id", "status"))
    assert runs == [("t", "pending"), ("a", "pending"), ("b", "pending")]
    assert ExecutionLog.objects.get(execution=execution).seq == 1


def test_run_succeeds_with_leaf_output_timestamps_and_gap_free_logs(owner):
    workflow = make_workflow(
        owner, chain(emit("a", "{{ input.x * 2 }}"), emit("b", "{{ nodes.a }}"))
    )
    execution = run_to_end(start(workflow, {"x": 21}))
    assert execution.status == "succeeded"
    assert execution.output == {"b": 42}
    assert execution.started_at
    assert execution.finished_at
    assert execution.duration_ms is not None
    assert execution.lease_owner == ""
    seqs = list(ExecutionLog.objects.filter(execution=execution).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert execution.next_log_seq == len(seqs) + 1
    messages = list(
        ExecutionLog.objects.filter(execution=execution).values_list("message", flat=True)
    )
    assert "Execution started" in messages
    assert messages[-1] == "Execution succeeded"


def test_run_is_idempotent_after_terminal(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    execution = run_to_end(start(workflow))
    before = ExecutionLog.objects.filter(execution=execution).count()
    assert services.execution_run(execution_id=str(execution.pk), heartbeat=False) is None
    execution.refresh_from_db()
    assert execution.status == "succeeded"
    assert ExecutionLog.objects.filter(execution=execution).count() == before


def test_duplicate_worker_cannot_claim_a_live_lease(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    execution = start(workflow)
    Execution.objects.filter(pk=execution.pk).update(
        status="running",
        lease_owner="other",
        lease_expires_at=timezone.now() + dt.timedelta(seconds=60),
    )
    assert services.execution_run(execution_id=str(execution.pk), heartbeat=False) is None
    execution.refresh_from_db()
    assert execution.status == "running"
    assert execution.lease_owner == "other"


def test_lapsed_lease_is_taken_over_and_counted(owner):
    workflow = make_workflow(owner, chain(emit("a", 1), emit("b", 2)))
    execution = start(workflow)
    Execution.objects.filter(pk=execution.pk).update(
        status="running",
        lease_owner="dead",
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1),
        started_at=timezone.now(),
    )
    NodeRun.objects.filter(execution=execution, node_id="t").update(
        status="succeeded", attempts=1, output={}
    )
    NodeRun.objects.filter(execution=execution, node_id="a").update(status="running", attempts=1)
    execution = run_to_end(execution)
    assert execution.status == "succeeded"
    assert execution.recovery_count == 1
    a = NodeRun.objects.get(execution=execution, node_id="a")
    assert a.attempts == 1  # the interrupted attempt is repeated, not counted twice
    messages = list(
        ExecutionLog.objects.filter(execution=execution).values_list("message", flat=True)
    )
    assert any("resumed after its worker was lost" in m for m in messages)
    assert "Node started" not in [
        m
        for m, n in ExecutionLog.objects.filter(execution=execution).values_list(
            "message", "node_id"
        )
        if n == "t"
    ]


def test_worker_lost_too_often_fails_the_execution(owner, settings):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    execution = start(workflow)
    Execution.objects.filter(pk=execution.pk).update(
        status="running",
        lease_owner="dead",
        lease_expires_at=timezone.now() - dt.timedelta(seconds=1),
        recovery_count=settings.EXECUTION_MAX_RECOVERIES,
    )
    NodeRun.objects.filter(execution=execution, node_id="t").update(status="running", attempts=1)
    services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    execution.refresh_from_db()
    assert execution.status == "failed"
    assert (execution.error or {})["code"] == "worker_lost"
    assert (execution.error or {})["node_id"] == "t"
    assert NodeRun.objects.get(execution=execution, node_id="t").status == "failed"


def test_delay_parks_execution_as_waiting_with_wake_at(owner):
    graph = chain({"id": "d", "type": "delay", "params": {"seconds": 600}}, emit("b", 1))
    execution = start(make_workflow(owner, graph))
    services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    execution.refresh_from_db()
    assert execution.status == "waiting"
    assert execution.wake_at is not None
    assert 590 < (execution.wake_at - timezone.now()).total_seconds() <= 600
    assert execution.lease_owner == ""
    # an early task (a duplicate) finds nothing due and changes nothing
    services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    execution.refresh_from_db()
    assert execution.status == "waiting"
    execution = run_to_end(execution)
    assert execution.status == "succeeded"
    assert execution.output == {"b": 1}


def test_cancel_queued_and_waiting_at_once_running_via_flag(owner):
    workflow = make_workflow(owner, chain({"id": "d", "type": "delay", "params": {"seconds": 600}}))
    queued = start(workflow)
    assert services.execution_cancel(execution=queued, by=owner) == "cancelled"
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert (queued.error or {})["code"] == "cancelled"
    assert set(queued.node_runs.values_list("status", flat=True)) == {"cancelled"}
    # a task arriving later finds nothing to claim
    assert services.execution_run(execution_id=str(queued.pk), heartbeat=False) is None

    waiting = start(workflow)
    services.execution_run(execution_id=str(waiting.pk), heartbeat=False)
    waiting.refresh_from_db()
    assert waiting.status == "waiting"
    assert services.execution_cancel(execution=waiting, by=owner) == "cancelled"
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"
    assert waiting.node_runs.get(node_id="d").status == "cancelled"
    assert waiting.node_runs.get(node_id="t").status == "succeeded"

    running = start(workflow)
    Execution.objects.filter(pk=running.pk).update(status="running", lease_owner="x")
    assert services.execution_cancel(execution=running, by=owner) == "running"
    running.refresh_from_db()
    assert running.cancel_requested is True
    assert running.status == "running"

    with pytest.raises(InvalidState):
        services.execution_cancel(execution=queued, by=owner)


def test_running_execution_with_cancel_flag_stops_before_next_node(owner):
    workflow = make_workflow(owner, chain(emit("a", 1), emit("b", 2)))
    execution = start(workflow)
    Execution.objects.filter(pk=execution.pk).update(cancel_requested=True)
    execution = run_to_end(execution)
    assert execution.status == "cancelled"
    assert set(execution.node_runs.values_list("status", flat=True)) == {"cancelled"}


def test_retry_from_failed_node_reuses_succeeded_outputs(owner):
    graph = chain(
        emit("a", "{{ input.x }}"),
        {"id": "bad", "type": "test_flaky", "params": {"fail_times": 1, "retryable": False}},
        emit("c", "{{ nodes.a }}"),
    )
    workflow = make_workflow(owner, graph)
    failed = run_to_end(start(workflow, {"x": 7}))
    assert failed.status == "failed"
    assert (failed.error or {})["node_id"] == "bad"

    retried = services.execution_retry(execution=failed, by=owner, from_failed_node=True)
    assert retried.trigger == "retry"
    assert retried.retry_of_id == failed.pk
    assert retried.input == {"x": 7}
    assert retried.node_runs.get(node_id="a").status == "succeeded"
    retried = run_to_end(retried)
    # the flaky node fails only on attempt 1 of each node run; a fresh run starts at 1 again
    assert retried.status == "failed"
    started_nodes = list(
        ExecutionLog.objects.filter(execution=retried, message="Node started").values_list(
            "node_id", flat=True
        )
    )
    assert started_nodes == ["bad"]  # t and a were reused, not run again


def test_retry_from_start_on_latest_version(owner):
    workflow = make_workflow(
        owner,
        chain({"id": "bad", "type": "test_flaky", "params": {"fail_times": 1, "retryable": False}}),
    )
    failed = run_to_end(start(workflow))
    new_graph = chain(emit("ok", "fixed"))
    workflow.graph, workflow.version = new_graph, 2
    workflow.save()
    retried = services.execution_retry(execution=failed, by=owner, version="latest")
    assert retried.workflow_version == 2
    assert run_to_end(retried).output == {"ok": "fixed"}
    same = services.execution_retry(execution=failed, by=owner, version="same")
    assert same.workflow_version == 1
    with pytest.raises(InvalidState):
        services.execution_retry(execution=run_to_end(retried), by=owner)


def test_delete_only_finished(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    execution = start(workflow)
    with pytest.raises(InvalidState):
        services.execution_delete(execution=execution)
    run_to_end(execution)
    services.execution_delete(execution=execution)
    assert not Execution.objects.filter(pk=execution.pk).exists()
    assert not ExecutionLog.objects.filter(execution_id=execution.pk).exists()


def test_idempotency_key_replays_and_conflicts(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    first, created = services.execution_start(
        workflow=workflow, trigger="manual", input={"x": 1}, user=owner, idempotency_key="k1"
    )
    again, created_again = services.execution_start(
        workflow=workflow, trigger="manual", input={"x": 1}, user=owner, idempotency_key="k1"
    )
    assert created
    assert not created_again
    assert again.pk == first.pk
    assert Execution.objects.count() == 1
    with pytest.raises(IdempotencyConflict):
        services.execution_start(
            workflow=workflow, trigger="manual", input={"x": 2}, user=owner, idempotency_key="k1"
        )
    # another scope may use the same key
    other, created_other = services.execution_start(
        workflow=workflow,
        trigger="webhook",
        input={"x": 1},
        user=None,
        idempotency_key="k1",
        idempotency_scope="webhook:abc",
    )
    assert created_other
    assert other.pk != first.pk


def test_cache_hit_then_expiry(owner):
    graph = chain(
        {"id": "r", "type": "test_random", "params": {"salt": "s"}, "cache_ttl_seconds": 60}
    )
    workflow = make_workflow(owner, graph)
    first = run_to_end(start(workflow))
    second = run_to_end(start(workflow))
    assert second.output == first.output
    assert second.node_runs.get(node_id="r").cached is True
    from executions.models import NodeResultCache

    NodeResultCache.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    third = run_to_end(start(workflow))
    assert third.output != first.output
    assert third.node_runs.get(node_id="r").cached is False


def test_sweeper_requeues_stale_queued_due_waiting_and_lapsed(owner, settings):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    stale = start(workflow)
    fresh = start(workflow)
    due = start(workflow)
    lapsed = start(workflow)
    old = timezone.now() - dt.timedelta(seconds=settings.EXECUTION_REQUEUE_AFTER_SECONDS + 5)
    Execution.objects.filter(pk=stale.pk).update(enqueued_at=old)
    Execution.objects.filter(pk=due.pk).update(status="waiting", wake_at=old, enqueued_at=None)
    Execution.objects.filter(pk=lapsed.pk).update(status="running", lease_expires_at=old)
    counts = services.executions_sweep()
    assert counts["stale"] == 1
    assert counts["due"] == 1
    assert counts["lost"] == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.enqueued_at is not None
    assert stale.enqueued_at > old
    assert fresh.enqueued_at is not None
    assert fresh.enqueued_at > old


def test_stats_computed_in_database(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    empty = workflow_execution_stats(workflow=workflow)
    assert empty["total"] == 0
    assert empty["success_rate"] is None
    assert empty["avg_duration_ms"] is None
    assert empty["p95_duration_ms"] is None
    assert empty["last_execution"] is None
    durations = [10, 20, 30, 40, 1000]
    for index, duration in enumerate(durations):
        execution = start(workflow)
        Execution.objects.filter(pk=execution.pk).update(
            status="failed" if index == 0 else "succeeded", duration_ms=duration
        )
    start(workflow)  # queued
    stats = workflow_execution_stats(workflow=workflow)
    assert stats["total"] == 6
    assert stats["by_status"]["succeeded"] == 4
    assert stats["by_status"]["failed"] == 1
    assert stats["by_status"]["queued"] == 1
    assert stats["success_rate"] == pytest.approx(0.8)
    assert stats["avg_duration_ms"] == pytest.approx(220.0)
    assert stats["p95_duration_ms"] == 1000
    assert stats["last_execution"]["status"] == "queued"


def test_execute_workflow_command_waits_and_reports(owner):
    from io import StringIO

    from django.core.management import CommandError, call_command

    workflow = make_workflow(owner, chain(emit("a", "{{ input.x }}")))
    out = StringIO()
    call_command("execute_workflow", str(workflow.pk), "--input", '{"x": 3}', stdout=out)
    execution = Execution.objects.get()
    assert f"execution {execution.pk} queued" in out.getvalue()
    with pytest.raises(CommandError, match="not JSON"):
        call_command("execute_workflow", str(workflow.pk), "--input", "{nope")
    with pytest.raises(CommandError, match="No workflow"):
        call_command("execute_workflow", "00000000-0000-0000-0000-000000000000")


def test_secrets_are_redacted_from_outputs_and_logs(owner):
    from workflows.credentials import credential_create

    credential = credential_create(
        owner=owner, name="api", type="http_bearer", data={"token": "tok-s3cret-value"}
    )
    graph = chain({"id": "s", "type": "test_secret", "params": {"credential": str(credential.pk)}})
    execution = run_to_end(start(make_workflow(owner, graph)))
    assert execution.status == "succeeded", execution.error
    assert execution.output == {"s": {"header": "Bearer ***"}}
    logs = list(ExecutionLog.objects.filter(execution=execution).values_list("message", "data"))
    assert ("using ***", {"token": "***"}) in logs
    assert "tok-s3cret-value" not in str(logs)


def test_missing_credential_fails_the_node_with_node_error(owner):
    graph = chain({"id": "s", "type": "test_secret", "params": {"credential": None}})
    execution = run_to_end(start(make_workflow(owner, graph)))
    assert execution.status == "failed"
    assert (execution.error or {})["code"] == "node_error"


def test_deleting_a_workflow_deletes_its_executions(owner):
    from workflows.models import Workflow

    workflow = make_workflow(owner, chain(emit("a", 1)))
    execution = run_to_end(start(workflow))
    workflow.delete()
    assert not Workflow.objects.filter(pk=workflow.pk).exists()
    assert not Execution.objects.filter(pk=execution.pk).exists()


def test_the_run_task_is_published_with_its_arguments_written_out_not_saferepr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.app import amqp
    from celery.signals import before_task_publish

    def refuse(*args: object, **kwargs: object) -> str:
        raise AssertionError("saferepr is not called for a run task")

    monkeypatch.setattr(amqp, "saferepr", refuse)
    published: list[dict] = []

    def remember(headers: dict, **kwargs: object) -> None:
        published.append(headers)

    before_task_publish.connect(remember, weak=False)
    try:
        assert services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000001") is True
    finally:
        before_task_publish.disconnect(remember)
    assert [(h["task"], h["argsrepr"], h["kwargsrepr"]) for h in published] == [
        ("executions.tasks.run_execution_task", "('7d3c2f0e-0000-4000-8000-000000000001',)", "{}")
    ]


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="counts the broker's Redis queue")
def test_each_thread_publishes_through_one_producer_until_a_publish_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from celery.signals import before_task_publish

    published: list[str] = []

    def remember(headers: dict, **kwargs: object) -> None:
        published.append(str(headers["argsrepr"]))

    def in_a_thread() -> object:
        services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000003")
        return services._thread_producer.producer

    queue = redis.Redis.from_url(celery_app.conf.broker_url)
    queued_before = queue.llen(celery_app.conf.task_default_queue)
    before_task_publish.connect(remember, weak=False)
    try:
        services._drop_producer()
        assert services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000001") is True
        first = services._thread_producer.producer
        [declared] = services._thread_producer.declare  # where Celery routes run tasks, bound
        assert declared.is_bound
        assert declared.name == celery_app.conf.task_default_queue
        assert services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000002") is True
        assert services._thread_producer.producer is first
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(in_a_thread).result() not in (None, first)

        # A failed publish (a broker outage) drops the producer; the next one builds another.
        def refuse(*args: object, **kwargs: object) -> None:
            raise ConnectionError("the broker is down")

        monkeypatch.setattr(first, "publish", refuse)
        assert services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000004") is False
        assert services._thread_producer.producer is None
        assert services._enqueue_now("7d3c2f0e-0000-4000-8000-000000000005") is True
        assert services._thread_producer.producer not in (None, first)
    finally:
        before_task_publish.disconnect(remember)
    assert [text[-5:-3] for text in published] == ["01", "02", "03", "04", "05"]
    assert queue.llen(celery_app.conf.task_default_queue) - queued_before == 4  # all but "04"


def test_runs_hold_their_leases_through_the_processs_one_keeper_thread(owner):
    workflow = make_workflow(owner, chain(emit("a", 1)))
    for _ in range(3):
        execution = start(workflow)
        services.execution_run(execution_id=str(execution.pk))  # with its heartbeat
        assert Execution.objects.get(pk=execution.pk).status == "succeeded"
    keepers = [t for t in threading.enumerate() if t.name == "autoflow-lease"]
    assert len(keepers) == 1  # one long-lived thread, not one started and joined per run
    assert leases.keeper.held() == 0


# --- NUL characters, which PostgreSQL does not store -------------------------------------------


def test_a_node_output_holding_a_nul_fails_that_node_and_the_run_ends(owner):
    # The template writes `\u0000` as text in the graph; rendered, it is a NUL. Before, the
    # run's end could not be written and the run stayed `running` until its lease lapsed.
    nul = {"fields": {"v": "{{ input.x | replace('-', '\\u0000') }}"}}
    graph = chain({"id": "a", "type": "transform", "params": nul}, emit("b", "after"))
    execution = run_to_end(start(make_workflow(owner, graph), {"x": "a-b"}))
    assert execution.status == "failed"
    assert (execution.error or {})["code"] == "node_error"
    assert "NUL" in (execution.error or {})["message"]
    runs = {run.node_id: run for run in NodeRun.objects.filter(execution=execution)}
    assert (runs["a"].status, runs["a"].output) == ("failed", None)
    assert runs["b"].status == "pending"  # never ran: the run stopped at "a"


def test_a_nul_in_an_error_message_is_stored_as_a_replacement_character(owner):
    # An error's text may quote what a server answered, NULs included.
    said = {"fail_times": 1, "retryable": False, "message": "{{ 'server said \\u0000:' }}"}
    graph = chain({"id": "a", "type": "test_flaky", "params": said})
    execution = run_to_end(start(make_workflow(owner, graph), {}))
    assert execution.status == "failed"
    assert (execution.error or {})["message"] == "server said \ufffd: 1"
    failed = NodeRun.objects.get(execution=execution, node_id="a")
    assert failed.error == {"code": "node_error", "message": "server said \ufffd: 1"}
    messages = ExecutionLog.objects.filter(execution=execution).values_list("message", flat=True)
    assert any("server said \ufffd: 1" in message for message in messages)
