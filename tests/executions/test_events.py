"""Events reach the channel layer after commit: logs, status, completion, failure notice."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from executions import services
from executions.events import publisher, unbatched
from tests.executions.conftest import make_graph, make_workflow

pytestmark = pytest.mark.django_db


async def _drain(layer: Any, channel: str, until_type: str, limit: int = 200) -> list[dict]:
    """Received messages, batches unpacked, up to the first of `until_type`."""
    messages: list[dict] = []
    for _ in range(limit):
        received = await asyncio.wait_for(layer.receive(channel), timeout=5)
        messages.extend(unbatched(received))
        if any(message["type"] == until_type for message in unbatched(received)):
            break
    return messages


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="cross-process layer needs Redis")
def test_failed_run_publishes_logs_status_complete_and_notification(
    owner, django_capture_on_commit_callbacks
):
    # given
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    graph = make_graph(
        [{"id": "bad", "type": "test_flaky", "params": {"fail_times": 1, "retryable": False}}],
        [("t", "bad")],
    )
    workflow = make_workflow(owner, graph)
    with django_capture_on_commit_callbacks(execute=False):
        execution, _ = services.execution_start(
            workflow=workflow, trigger="manual", input={}, user=owner
        )
    async_to_sync(layer.group_add)(f"execution.{execution.pk}", channel)
    async_to_sync(layer.group_add)(f"user.{owner.pk}", channel)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    assert publisher.wait_idle(10)

    # then
    messages = async_to_sync(_drain)(layer, channel, "notification")
    types = [m["type"] for m in messages]
    assert "execution.logs" in types
    assert "execution.status" in types
    assert types.index("execution.complete") < types.index("notification")
    lines = [line for m in messages if m["type"] == "execution.logs" for line in m["lines"]]
    seqs = [line["seq"] for line in lines]
    assert seqs == sorted(seqs)
    assert set(lines[0]) == {"seq", "ts", "level", "node_id", "message", "data"}
    complete = next(m for m in messages if m["type"] == "execution.complete")
    assert complete["status"] == "failed"
    assert complete["execution_id"] == str(execution.pk)
    notification = messages[-1]
    assert notification["level"] == "error"
    assert notification["execution_id"] == str(execution.pk)
    assert notification["workflow_id"] == str(workflow.pk)
    node_statuses = [
        (m["node_id"], m["node_status"]) for m in messages if m.get("node_id") is not None
    ]
    assert ("bad", "failed") in node_statuses


def test_starting_an_execution_publishes_nothing_and_its_first_line_is_stored(
    owner, django_capture_on_commit_callbacks, monkeypatch
):
    # Nobody can be subscribed to a run whose id is new; subscribers begin at what is stored.
    sent: list[Any] = []
    enqueued: list[str] = []
    monkeypatch.setattr(publisher, "send", lambda messages: sent.extend(messages))
    monkeypatch.setattr(
        services, "_enqueue_now", lambda execution_id, _: enqueued.append(execution_id)
    )
    workflow = make_workflow(owner, make_graph([{"id": "a", "type": "test_emit"}], [("t", "a")]))
    with django_capture_on_commit_callbacks(execute=True):
        execution, _ = services.execution_start(
            workflow=workflow, trigger="manual", input={}, user=owner
        )
    assert enqueued == [str(execution.pk)]  # every commit hook ran
    assert sent == []
    first = execution.logs.get()
    assert (first.seq, first.message) == (1, "Execution queued")


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="cross-process layer needs Redis")
def test_a_failed_publish_does_not_stop_the_next_one():
    # given: a message the layer cannot serialise, then a good one for another group
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("execution.events-test", channel)
    # when
    publisher.send(
        [
            ("execution.events-bad", {"type": "execution.status", "bad": object()}),
            ("execution.events-test", {"type": "execution.status", "status": "running"}),
        ]
    )
    # then
    assert publisher.wait_idle(10)
    received = async_to_sync(_drain)(layer, channel, "execution.status", limit=1)
    assert received[0]["status"] == "running"


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="cross-process layer needs Redis")
def test_messages_published_together_reach_a_group_as_one_batch_in_order():
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("execution.batch-test", channel)
    statuses = [f"step-{index}" for index in range(5)]

    publisher.send(
        [("execution.batch-test", {"type": "execution.status", "status": s}) for s in statuses]
    )

    assert publisher.wait_idle(10)
    received = async_to_sync(asyncio.wait_for)(layer.receive(channel), 5)
    assert received["type"] == "event.batch"
    assert [message["status"] for message in unbatched(received)] == statuses
