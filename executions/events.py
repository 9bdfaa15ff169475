"""Publish execution events to the channel layer, after commit, cheaply, never failing a run.

Groups: `execution.<id>` gets `execution.logs`, `execution.status` and `execution.complete`;
`user.<owner_id>` gets a `notification` when an execution fails. The completion of a run with
a `notify_channel` (a waiting webhook's web process) also goes to that Redis pub/sub channel
(`executions.completions`).

One long-lived event loop per process (in a daemon thread) drains one bounded queue in order,
so publishing costs the caller a queue put, not an `async_to_sync` round trip per line; what
is queued together goes out as one `event.batch` per group. A full queue or a down Redis drops
messages (the stored log stays the source of truth) and is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
BATCH_MAX = 500
BATCH_TYPE = "event.batch"
Message = tuple[str, dict[str, Any]]


def execution_group(execution_id: object) -> str:
    return f"execution.{execution_id}"


def user_group(user_id: object) -> str:
    return f"user.{user_id}"


def completion_channel(name: str) -> str:
    """The Redis pub/sub channel of a process waiting for runs' ends (`executions.completions`)."""
    return f"autoflow:completion:{name}"


class _LocalWaiters:
    """Completion futures of waiters in this process, resolved from any thread.

    The in-memory channel layer (the embedded default) is not thread-safe: a message sent from
    the worker's thread does not wake a receiver on the web server's loop. Waiters there
    register here instead; the publisher resolves them when it sees the completion.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]] = {}

    def add(self, execution_id: object, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._futures.setdefault(str(execution_id), []).append((loop, future))
        return future

    def discard(self, execution_id: object, future: asyncio.Future[Any]) -> None:
        with self._lock:
            entries = self._futures.get(str(execution_id), [])
            entries[:] = [entry for entry in entries if entry[1] is not future]
            if not entries:
                self._futures.pop(str(execution_id), None)

    def resolve(self, execution_id: str, message: dict[str, Any]) -> None:
        with self._lock:
            entries = self._futures.pop(execution_id, [])
        for loop, future in entries:
            loop.call_soon_threadsafe(_set_result, future, message)


def _set_result(future: asyncio.Future[Any], message: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(message)


local_waiters = _LocalWaiters()


class _Publisher:
    """One background loop per process; re-created after a fork (prefork pool children)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._drainer: asyncio.Task[None] | None = None
        self._pending = 0

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                return self._loop
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                self._queue = asyncio.Queue(maxsize=QUEUE_SIZE)
                self._drainer = loop.create_task(self._drain())
                ready.set()
                loop.run_forever()

            threading.Thread(target=run, name="autoflow-events", daemon=True).start()
            ready.wait(5)
            self._loop, self._pid, self._pending = loop, os.getpid(), 0
            return loop

    async def _drain(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        redis = None
        if settings.REDIS_URL:
            redis = aioredis.Redis.from_url(
                settings.REDIS_URL, socket_connect_timeout=5, socket_keepalive=True
            )
        while True:
            batch = [await self._queue.get()]
            # The commit hooks of one transaction queue their messages back to back: let them
            # all arrive, then send what is queued together.
            await asyncio.sleep(0)
            while len(batch) < BATCH_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await _publish(layer, redis, batch)
            finally:
                self._pending -= len(batch)

    def _put(self, items: list[Message]) -> None:
        for item in items:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self._pending -= 1
                logger.warning("event queue full; dropped a %s message", item[1].get("type"))

    def send(self, messages: Iterable[Message]) -> None:
        """Queue messages for publishing; never raises."""
        try:
            items = list(messages)
            for _, body in items:
                if body.get("type") == "execution.complete":
                    local_waiters.resolve(body["execution_id"], body)
            loop = self._ensure_started()
            self._pending += len(items)
            loop.call_soon_threadsafe(self._put, items)
        except Exception:
            logger.warning("event publish failed", exc_info=True)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait (bounded) until every queued message went out; for tests and shutdown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending <= 0:
                return True
            time.sleep(0.01)
        return False


async def _publish(layer: Any, redis: aioredis.Redis | None, batch: list[Message]) -> None:
    """Send a batch: one channel-layer message per group (a batch where a group has several).

    A group send costs the same for one message as for many, and a run's commit publishes
    several (node states, log lines, status, completion). A failed send (a down Redis) drops
    that group's messages only. An execution's end is also published on the channel of the
    process waiting for it, first: a waiting webhook holds an HTTP request open.
    """
    by_group: dict[str, list[dict[str, Any]]] = {}
    for group, message in batch:
        if redis is not None and message.get("notify_channel"):
            await _announce(redis, message)
        by_group.setdefault(group, []).append(message)
    if layer is None:
        return
    for group, messages in by_group.items():
        single = len(messages) == 1
        await _send(layer, group, messages[0] if single else batch_message(messages))


async def _send(layer: Any, group: str, message: dict[str, Any]) -> None:
    try:
        await layer.group_send(group, message)
    except Exception:  # a down Redis must not stop the next message
        logger.warning("event publish failed", exc_info=True)


async def _announce(redis: aioredis.Redis, message: dict[str, Any]) -> None:
    try:
        body = json.dumps(message, cls=DjangoJSONEncoder)
        await redis.publish(message["notify_channel"], body)
    except Exception:  # waiters re-check the database
        logger.warning("completion publish failed", exc_info=True)


def batch_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Several messages for one group, in order; receivers handle each as if sent alone."""
    return {"type": BATCH_TYPE, "messages": messages}


def unbatched(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages a received channel-layer message stands for, in order."""
    if message.get("type") == BATCH_TYPE:
        return list(message.get("messages") or [])
    return [message]


publisher = _Publisher()


def publish_on_commit(messages: list[Message]) -> None:
    """Publish once the current transaction commits (at once outside one)."""
    if messages:
        transaction.on_commit(lambda: publisher.send(messages))


def logs_message(execution_id: object, lines: list[dict[str, Any]]) -> Message:
    return (
        execution_group(execution_id),
        {"type": "execution.logs", "execution_id": str(execution_id), "lines": lines},
    )


def status_message(
    execution_id: object,
    status: str,
    *,
    node_id: str | None = None,
    node_status: str | None = None,
) -> Message:
    body: dict[str, Any] = {
        "type": "execution.status",
        "execution_id": str(execution_id),
        "status": status,
    }
    if node_id is not None:
        body["node_id"] = node_id
        body["node_status"] = node_status
    return execution_group(execution_id), body


def complete_message(
    execution_id: object,
    status: str,
    duration_ms: int | None,
    output: Any,
    *,
    notify_channel: str = "",
) -> Message:
    """An execution's end; `notify_channel`: the run's waiting process's, to publish it on too."""
    body = {
        "type": "execution.complete",
        "execution_id": str(execution_id),
        "status": status,
        "duration_ms": duration_ms,
        "output": output,
    }
    if notify_channel:
        body["notify_channel"] = notify_channel
    return execution_group(execution_id), body


def failure_notification(
    *, owner_id: object, execution_id: object, workflow_id: object, workflow_name: str, error: Any
) -> Message:
    message = (error or {}).get("message") if isinstance(error, dict) else None
    return (
        user_group(owner_id),
        {
            "type": "notification",
            "level": "error",
            "title": f"Execution of {workflow_name!r} failed",
            "message": message or "The execution failed.",
            "execution_id": str(execution_id),
            "workflow_id": str(workflow_id),
        },
    )
