"""Events reach the channel layer after commit: logs, status, completion, failure notice."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import uuid
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from executions import services
from executions.events import complete_message, publisher, status_message, unbatched
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
    # given: a message the layer cannot serialise, then a good one for another group, both
    # watched (an unwatched group's messages are dropped before anything serialises them)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("execution.events-test", channel)
    async_to_sync(layer.group_add)("execution.events-bad", async_to_sync(layer.new_channel)())
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


needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="the blocking check needs Redis"
)


def _calls_of(monkeypatch: pytest.MonkeyPatch, layer: Any, name: str) -> list[str]:
    """The groups the loop sends to through `layer.<name>`, recorded, the send still made."""
    calls: list[str] = []
    original = getattr(layer, name)

    async def recorded(group: str, message: dict[str, Any]) -> None:
        calls.append(group)
        await original(group, message)

    monkeypatch.setattr(layer, name, recorded)
    return calls


def _listening(pattern: str) -> Any:
    listener = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub()
    listener.psubscribe(pattern)
    confirmed = listener.get_message(timeout=5)
    assert confirmed is not None
    assert confirmed["type"] == "psubscribe"
    return listener


def _heard(listener: Any) -> list[str]:
    heard = []
    while (message := listener.get_message(timeout=0.5)) is not None:
        heard.append(json.loads(message["data"])["execution_id"])
    return heard


@needs_redis
def test_an_unwatched_groups_messages_never_reach_the_loop_and_the_end_is_announced(
    monkeypatch,
):
    # given: nobody joined the run's group; its waiting process listens for the end
    layer = get_channel_layer()
    sends = _calls_of(monkeypatch, layer, "group_send")
    member_sends = _calls_of(monkeypatch, layer, "send_to_members")
    queued: list[str] = []
    put = publisher._put

    def recorded_put(items: list[Any]) -> None:
        queued.extend(item[0] for item in items)
        put(items)

    monkeypatch.setattr(publisher, "_put", recorded_put)
    execution_id = uuid.uuid4()
    group = f"execution.{execution_id}"
    channel = f"autoflow:completion:events-test-{uuid.uuid4().hex[:8]}"
    listener = _listening(channel)
    try:
        # when
        publisher.send(
            [
                status_message(execution_id, "running"),
                complete_message(execution_id, "succeeded", 3, {"a": 1}, notify_channel=channel),
            ]
        )
        # then: announced from the calling thread
        assert _heard(listener) == [str(execution_id)]
    finally:
        listener.close()
    # ...and nothing of the run's was queued for the loop or sent by it
    assert publisher.wait_idle(10)
    assert group not in queued
    assert group not in sends
    assert group not in member_sends


@needs_redis
def test_a_watched_group_is_sent_to_without_being_asked_again(monkeypatch):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    group = f"execution.{uuid.uuid4()}"
    async_to_sync(layer.group_add)(group, channel)
    checks = _calls_of(monkeypatch, layer, "group_has_members")

    publisher.send([status_message(group.split(".", 1)[1], "running")])

    assert publisher.wait_idle(10)
    received = async_to_sync(asyncio.wait_for)(layer.receive(channel), 5)
    assert received["status"] == "running"
    assert group not in checks  # the blocking round trip found the member; the loop did not ask


@needs_redis
def test_while_redis_cannot_be_asked_at_once_the_loop_does_it_all(monkeypatch):
    # given: the blocking client fails (Redis itself is up, so the loop can still send)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    execution_id = uuid.uuid4()
    async_to_sync(layer.group_add)(f"execution.{execution_id}", channel)
    blocking = publisher._blocking_client()
    assert blocking is not None
    client = blocking[0]
    pipelines: list[int] = []
    this_thread = threading.get_ident()

    def broken_pipeline(*_: Any, **__: Any) -> Any:
        if threading.get_ident() == this_thread:  # not another test's publisher thread
            pipelines.append(1)
        raise redis.ConnectionError("refused")

    monkeypatch.setattr(client, "pipeline", broken_pipeline)
    monkeypatch.setattr(publisher, "_blocking_retry_at", 0.0)
    notify = f"autoflow:completion:events-test-{uuid.uuid4().hex[:8]}"
    listener = _listening(notify)
    try:
        # when: two commits' messages, the second within the retry pause
        publisher.send([status_message(execution_id, "running")])
        publisher.send(
            [complete_message(execution_id, "succeeded", 3, None, notify_channel=notify)]
        )
        # then: the loop announced the end and sent both, in order; one failed try only
        assert publisher.wait_idle(10)
        assert _heard(listener) == [str(execution_id)]
    finally:
        listener.close()
    types = [m["type"] for m in async_to_sync(_drain)(layer, channel, "execution.complete")]
    assert types == ["execution.status", "execution.complete"]
    assert pipelines == [1]


@needs_redis
def test_a_runs_running_status_rides_its_first_write_with_its_first_line(
    owner, django_capture_on_commit_callbacks
):
    # given: a run somebody watches before it starts
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    workflow = make_workflow(owner, make_graph([{"id": "a", "type": "test_emit"}], [("t", "a")]))
    with django_capture_on_commit_callbacks(execute=False):
        execution, _ = services.execution_start(
            workflow=workflow, trigger="manual", input={}, user=owner
        )
    async_to_sync(layer.group_add)(f"execution.{execution.pk}", channel)

    # when
    with django_capture_on_commit_callbacks(execute=True):
        services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    assert publisher.wait_idle(10)

    # then: the claim's commit published nothing of its own; its status came first, with the
    # run's first line, in the one message the run's only write sent
    first = async_to_sync(asyncio.wait_for)(layer.receive(channel), 5)
    messages = unbatched(first)
    assert (messages[0]["type"], messages[0]["status"]) == ("execution.status", "running")
    assert "node_id" not in messages[0]
    assert messages[1]["type"] == "execution.logs"
    assert messages[1]["lines"][0]["message"] == "Execution started"
    assert messages[-1]["type"] == "execution.complete"
