"""End to end: executions run by a real Celery worker process (prefork) and beat's sweeper.

Timings are tolerant (a loaded 2-core machine), but every wait is bounded.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any

import pytest
import requests

from executions import services
from executions.models import Execution, ExecutionLog, NodeRun
from tests.executions.conftest import (
    EngineProcesses,
    make_graph,
    make_workflow,
    wait_finished,
    wait_for,
)
from tests.executions.nodetypes import runs_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def chain(*nodes: dict[str, Any], **settings: Any) -> dict[str, Any]:
    ids = ["t", *[n["id"] for n in nodes]]
    return make_graph(list(nodes), list(itertools.pairwise(ids)), **settings)


def start(workflow, input=None) -> Execution:
    return services.execution_start(
        workflow=workflow, trigger="manual", input=input or {}, user=workflow.owner
    )[0]


def node_status(execution: Execution, node_id: str) -> str:
    return NodeRun.objects.get(execution=execution, node_id=node_id).status


def test_execute_runs_to_success_on_the_worker(owner, running_engine: EngineProcesses):
    graph = chain(
        {"id": "a", "type": "test_emit", "params": {"value": "{{ input.x + 1 }}"}},
        {"id": "b", "type": "transform", "params": {"fields": {"y": "{{ nodes.a * 2 }}"}}},
    )
    execution = wait_finished(start(make_workflow(owner, graph), {"x": 1}).pk)
    assert execution.status == "succeeded", execution.error
    assert execution.output == {"b": {"y": 4}}


def test_retries_back_off_with_growing_gaps(owner, running_engine: EngineProcesses):
    graph = chain(
        {
            "id": "flaky",
            "type": "test_flaky",
            "params": {"fail_times": 3},
            "retry": {"max_attempts": 4, "backoff_seconds": 0.4, "backoff_factor": 2},
        }
    )
    execution = wait_finished(start(make_workflow(owner, graph)).pk, timeout=40)
    assert execution.status == "succeeded", execution.error
    run = NodeRun.objects.get(execution=execution, node_id="flaky")
    assert run.attempts == 4
    starts = list(
        ExecutionLog.objects.filter(execution=execution, node_id="flaky")
        .filter(message__in=["Node started", "Attempt 2 of 4", "Attempt 3 of 4", "Attempt 4 of 4"])
        .order_by("seq")
        .values_list("ts", flat=True)
    )
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 3
    # 0.4, 0.8, 1.6 s (±20 % jitter), plus scheduling slack on a loaded machine
    for gap, expected in zip(gaps, (0.4, 0.8, 1.6), strict=True):
        assert expected * 0.75 <= gap <= expected * 1.25 + 1.5, gaps
    assert gaps[0] < gaps[2]


def test_node_timeout_fails_within_about_a_second(owner, running_engine: EngineProcesses):
    graph = chain(
        {"id": "slow", "type": "test_sleep", "params": {"seconds": 30}, "timeout_seconds": 1}
    )
    execution = wait_finished(start(make_workflow(owner, graph)).pk, timeout=20)
    assert execution.status == "failed"
    assert execution.error == {
        "code": "node_timeout",
        "message": "The node did not finish within 1 s.",
        "node_id": "slow",
    }
    run = NodeRun.objects.get(execution=execution, node_id="slow")
    assert run.finished_at is not None
    assert run.started_at is not None
    assert (run.finished_at - run.started_at).total_seconds() < 2.5
    # the slot is free again: a quick run finishes right after
    quick = wait_finished(start(make_workflow(owner, chain())).pk, timeout=10)
    assert quick.status == "succeeded"


def test_execution_timeout_during_delay(owner, running_engine: EngineProcesses):
    graph = chain({"id": "d", "type": "delay", "params": {"seconds": 60}}, timeout_seconds=1)
    execution = wait_finished(start(make_workflow(owner, graph)).pk, timeout=20)
    assert execution.status == "failed"
    assert (execution.error or {})["code"] == "execution_timeout"
    assert (execution.error or {})["node_id"] == "d"


def test_cache_hit_then_expiry(owner, running_engine: EngineProcesses):
    graph = chain(
        {"id": "r", "type": "test_random", "params": {"salt": "x"}, "cache_ttl_seconds": 2}
    )
    workflow = make_workflow(owner, graph)
    first = wait_finished(start(workflow).pk)
    second = wait_finished(start(workflow).pk)
    assert second.output == first.output
    assert NodeRun.objects.get(execution=second, node_id="r").cached is True
    time.sleep(2.2)
    third = wait_finished(start(workflow).pk)
    assert third.output != first.output
    assert NodeRun.objects.get(execution=third, node_id="r").cached is False


def test_many_short_delays_finish_fast_without_holding_slots(
    owner, running_engine: EngineProcesses
):
    # given: 2 worker slots and 100 executions that each wait 3 s (holding slots: 150 s)
    count = 100
    graph = chain({"id": "d", "type": "delay", "params": {"seconds": 3}})
    workflow = make_workflow(owner, graph)
    started = time.monotonic()
    ids = [start(workflow).pk for _ in range(count)]

    # when / then
    def all_done() -> bool:
        return Execution.objects.filter(pk__in=ids, status="succeeded").count() == count

    wait_for(all_done, timeout=60, interval=0.2)
    elapsed = time.monotonic() - started
    print(f"{count} executions with a 3 s delay on 2 slots: {elapsed:.1f} s")  # noqa: T201
    assert elapsed < 30, elapsed


def test_cancel_waiting_and_running(owner, running_engine: EngineProcesses):
    waiting_graph = chain(
        {"id": "d", "type": "delay", "params": {"seconds": 60}},
        {"id": "after", "type": "test_emit"},
    )
    waiting = start(make_workflow(owner, waiting_graph))
    wait_for(lambda: Execution.objects.get(pk=waiting.pk).status == "waiting", timeout=15)
    assert services.execution_cancel(execution=waiting, by=owner) == "cancelled"
    waiting.refresh_from_db()
    assert waiting.status == "cancelled"

    running_graph = chain(
        {"id": "slow", "type": "test_effect", "params": {"seconds": 1.5}},
        {"id": "next", "type": "test_emit", "params": {"value": 1}},
    )
    running = start(make_workflow(owner, running_graph))
    wait_for(lambda: node_status(running, "slow") == "running", timeout=15)
    assert services.execution_cancel(execution=running, by=owner) == "running"
    running = wait_finished(running.pk, timeout=20)
    assert running.status == "cancelled"
    assert node_status(running, "next") == "cancelled"
    assert runs_of(str(running.pk), "next") == 0


def test_retry_from_failed_node_on_the_worker(owner, running_engine: EngineProcesses):
    graph = chain(
        {"id": "a", "type": "test_emit", "params": {"value": 1}},
        {"id": "bad", "type": "test_flaky", "params": {"fail_times": 1, "retryable": False}},
    )
    failed = wait_finished(start(make_workflow(owner, graph)).pk)
    assert failed.status == "failed"
    retried = services.execution_retry(execution=failed, by=owner, from_failed_node=True)
    retried = wait_finished(retried.pk)
    assert runs_of(str(retried.pk), "a") == 0  # reused, not run again


def _kill_mid_node(engine: EngineProcesses, owner: Any, *, target: str) -> tuple[Execution, float]:
    worker = engine.worker(concurrency=1)
    engine.beat()
    graph = chain(
        {"id": "first", "type": "test_emit", "params": {"value": 1}},
        {"id": "slow", "type": "test_effect", "params": {"seconds": 2}},
        {"id": "last", "type": "test_emit", "params": {"value": 2}},
    )
    execution = start(make_workflow(owner, graph))
    # Mid-node: stored as running (committed before a side effect) AND inside its run().
    wait_for(
        lambda: (
            node_status(execution, "slow") == "running" and runs_of(str(execution.pk), "slow") == 1
        ),
        timeout=20,
    )
    killed_at = time.monotonic()
    if target == "child":
        for pid in worker.pool_children():
            os.kill(pid, signal.SIGKILL)
    else:
        os.killpg(worker.process.pid, signal.SIGKILL)
        engine.worker(concurrency=1)  # another machine's worker takes over
    return wait_finished(execution.pk, timeout=60), killed_at


@pytest.mark.parametrize("target", ["child", "main"])
def test_sigkill_mid_execution_resumes_without_rerunning_finished_nodes(
    owner, engine: EngineProcesses, fast_engine: None, target: str
):
    execution, killed_at = _kill_mid_node(engine, owner, target=target)
    recovered_in = time.monotonic() - killed_at
    assert execution.status == "succeeded", execution.error
    assert runs_of(str(execution.pk), "first") == 1
    assert runs_of(str(execution.pk), "last") == 1
    assert runs_of(str(execution.pk), "slow") == 2  # interrupted, so run again (at least once)
    assert execution.recovery_count >= 1
    assert recovered_in < 30


def test_sigterm_lets_the_current_node_finish(owner, engine: EngineProcesses, fast_engine: None):
    worker = engine.worker(concurrency=1)
    graph = chain(
        {"id": "slow", "type": "test_effect", "params": {"seconds": 2}},
        {"id": "last", "type": "test_emit", "params": {"value": 2}},
    )
    execution = start(make_workflow(owner, graph))
    wait_for(lambda: node_status(execution, "slow") == "running", timeout=20)
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(30)
    execution.refresh_from_db()
    assert NodeRun.objects.get(execution=execution, node_id="slow").status == "succeeded"
    assert runs_of(str(execution.pk), "slow") == 1
    # whatever was left is picked up by the next worker, without running `slow` again
    engine.worker(concurrency=1)
    engine.beat()
    execution = wait_finished(execution.pk, timeout=30)
    assert execution.status == "succeeded"
    assert runs_of(str(execution.pk), "slow") == 1


def test_cancelled_while_queued_never_runs_and_queued_runs_once_a_worker_starts(
    owner, engine: EngineProcesses, fast_engine: None
):
    # the broker holds the messages but no worker is there yet
    execution = start(
        make_workflow(owner, chain({"id": "a", "type": "test_emit", "params": {"value": 1}}))
    )
    time.sleep(0.5)
    assert Execution.objects.get(pk=execution.pk).status == "queued"
    assert services.execution_cancel(execution=execution, by=owner) == "cancelled"
    other = start(
        make_workflow(owner, chain({"id": "a", "type": "test_emit", "params": {"value": 1}}))
    )
    engine.worker()
    assert wait_finished(other.pk).status == "succeeded"
    assert Execution.objects.get(pk=execution.pk).status == "cancelled"
    assert runs_of(str(execution.pk), "a") == 0


def test_a_node_longer_than_the_lease_is_not_taken_over(owner, running_engine: EngineProcesses):
    # the lease is 3 s and the sweeper runs every second: only the heartbeat keeps the run
    graph = chain({"id": "long", "type": "test_sleep", "params": {"seconds": 5}})
    execution = wait_finished(start(make_workflow(owner, graph)).pk, timeout=30)
    assert execution.status == "succeeded"
    assert execution.recovery_count == 0
    assert runs_of(str(execution.pk), "long") == 1


def test_broker_down_at_execute_answers_202_and_the_sweeper_runs_it_later(
    owner, engine: EngineProcesses, fast_engine: None
):
    # given: a web process whose Redis (broker) is unreachable
    from django.db import connection

    from accounts.tokens import tokens_issue
    from tests.servers import closed_port, daphne_server, database_url_from_settings

    # built-in node types only: the web process does not load the test ones
    workflow = make_workflow(
        owner, chain({"id": "a", "type": "transform", "params": {"fields": {}}})
    )
    token = f"Bearer {tokens_issue(user=owner)['access']}"
    dead_redis = f"redis://127.0.0.1:{closed_port()}/4"
    with daphne_server(
        DATABASE_URL=database_url_from_settings(connection.settings_dict),
        REDIS_URL=dead_redis,
        **{"EXECUTION_REQUEUE_AFTER_SECONDS": "2"},
    ) as url:
        # when
        response = requests.post(
            f"{url}/api/workflows/{workflow.pk}/execute",
            json={"input": {}},
            headers={"Authorization": token},
            timeout=30,
        )
    # then: accepted and stored; it runs once a worker and the sweeper are up
    assert response.status_code == 202, response.text
    execution_id = response.json()["execution_id"]
    assert Execution.objects.get(pk=execution_id).status == "queued"
    engine.worker()
    engine.beat()
    assert wait_finished(execution_id, timeout=40).status == "succeeded"


def test_execute_workflow_command_waits_for_the_result(owner, running_engine: EngineProcesses):
    from io import StringIO

    from django.core.management import CommandError, call_command

    ok = make_workflow(owner, chain({"id": "a", "type": "test_emit", "params": {"value": 5}}))
    out = StringIO()
    call_command("execute_workflow", str(ok.pk), "--wait", "--timeout", "30", stdout=out)
    assert '"status": "succeeded"' in out.getvalue()
    assert '"a": 5' in out.getvalue()
    bad = make_workflow(
        owner,
        chain({"id": "b", "type": "test_flaky", "params": {"fail_times": 1, "retryable": False}}),
    )
    with pytest.raises(CommandError, match="ended failed"):
        call_command(
            "execute_workflow", str(bad.pk), "--wait", "--timeout", "30", stdout=StringIO()
        )


def test_a_pool_child_keeps_its_connection_and_replaces_a_dead_one(
    owner, engine: EngineProcesses, fast_engine: None
):
    from django.db import connection

    engine.worker(concurrency=1)
    workflow = make_workflow(owner, chain({"id": "pid", "type": "test_backend_pid"}))

    def backend_pid() -> int:
        execution = wait_finished(start(workflow).pk)
        assert execution.status == "succeeded", execution.error
        assert execution.output is not None
        return int(execution.output["pid"]["pid"])

    first = backend_pid()
    assert [backend_pid() for _ in range(3)] == [first] * 3
    with connection.cursor() as cursor:  # as a database restart would
        cursor.execute("SELECT pg_terminate_backend(%s)", [first])
    replaced = backend_pid()
    assert replaced != first
    assert backend_pid() == replaced
