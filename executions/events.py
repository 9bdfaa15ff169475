"""Publish execution events to the channel layer, after commit, cheaply, never failing a run.

Groups: `execution.<id>` gets `execution.logs`, `execution.status` and `execution.complete`;
`user.<owner_id>` gets a `notification` when an execution fails. The completion of a run with
a `notify_channel` (a waiting webhook's web process) also goes to that Redis pub/sub channel
(`executions.completions`).

With Redis, the committing thread first sends, in one pipelined round trip on a blocking
client, the completion announcements and one "has this group a live member?" query per group:
nobody watches most runs live, and then that round trip is all a commit's events cost. Only
the messages of watched groups go on, to one long-lived event loop per process (in a daemon
thread) that drains one bounded queue in order and sends them with channels_redis; what is
queued together goes out as one `event.batch` per group. Done on that loop, the same check and
announcement cost the worker ~0.85 ms of CPU per three-node run (the thread hop, asyncio and
redis.asyncio), about 40 % of the run's own work. A full queue or a down Redis drops messages
(the stored log stays the source of truth) and is logged; while the blocking client fails,
the loop does all of it, as it does for the in-memory layer of the embedded default.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction

from autoflow.channel_layer import RedisChannelLayer

logger = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
BATCH_MAX = 500
BATCH_TYPE = "event.batch"
# After the blocking client fails, the loop does its work for this long before it is tried again.
BLOCKING_RETRY_SECONDS = 1.0
Message = tuple[str, dict[str, Any]]
# A message for the loop, and whether its group was found watched (and its end announced).
Queued = tuple[str, dict[str, Any], bool]


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
        self._queue: asyncio.Queue[Queued] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self._drainer: asyncio.Task[None] | None = None
        self._pending = 0
        self._blocking_retry_at = 0.0

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

    def _put(self, items: list[Queued]) -> None:
        for item in items:
            try:
                self._queue.put_nowait(item)
            except asyncio.QueueFull:
                self._pending -= 1
                logger.warning("event queue full; dropped a %s message", item[1].get("type"))

    def send(self, messages: Iterable[Message]) -> None:
        """Publish messages: announce ends and drop unwatched groups' at once, queue the rest;
        never raises."""
        try:
            items = list(messages)
            for _, body in items:
                if body.get("type") == "execution.complete":
                    local_waiters.resolve(body["execution_id"], body)
            queued = self._watched(items)
            if not queued:
                return
            loop = self._ensure_started()
            self._pending += len(queued)
            loop.call_soon_threadsafe(self._put, queued)
        except Exception:
            logger.warning("event publish failed", exc_info=True)

    def _watched(self, items: list[Message]) -> list[Queued]:
        """Announce the ends and keep the messages of watched groups, in one round trip;
        everything, unchecked, when that cannot be done here."""
        blocking = self._blocking_client()
        if blocking is None:
            return [(group, message, False) for group, message in items]
        client, layer = blocking
        groups = list(dict.fromkeys(group for group, _ in items))
        ends = [message for _, message in items if message.get("notify_channel")]
        try:
            with client.pipeline(transaction=False) as pipe:
                for message in ends:
                    pipe.publish(message["notify_channel"], completion_body(message))
                for group in groups:
                    key, oldest = layer.members_query(group)
                    pipe.zrangebyscore(key, oldest, "+inf", start=0, num=1)
                members = pipe.execute()[len(ends) :]
        except Exception:  # the loop tries again, and drops what it cannot send
            logger.warning("event publish: handing the messages to the loop", exc_info=True)
            self._blocking_retry_at = time.monotonic() + BLOCKING_RETRY_SECONDS
            return [(group, message, False) for group, message in items]
        watched = {group for group, found in zip(groups, members, strict=True) if found}
        return [(group, message, True) for group, message in items if group in watched]

    def _blocking_client(self) -> tuple[redis.Redis, RedisChannelLayer] | None:
        if not settings.REDIS_URL or time.monotonic() < self._blocking_retry_at:
            return None
        return self._blocking

    @functools.cached_property
    def _blocking(self) -> tuple[redis.Redis, RedisChannelLayer] | None:
        """The blocking client on the channel layer's server, and the layer; made once."""
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        client = layer.blocking_client() if isinstance(layer, RedisChannelLayer) else None
        return None if client is None else (client, layer)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait (bounded) until every queued message went out; for tests and shutdown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._pending <= 0:
                return True
            time.sleep(0.01)
        return False


async def _publish(layer: Any, redis: aioredis.Redis | None, batch: list[Queued]) -> None:
    """Send a batch: one channel-layer message per group (a batch where a group has several).

    A group send costs the same for one message as for many, and a run's commit publishes
    several (node states, log lines, status, completion). A failed send (a down Redis) drops
    that group's messages only. An end not announced yet (`_Publisher._watched`) is announced
    on the channel of the process waiting for it, first: a waiting webhook holds an HTTP
    request open. A group found watched is sent to without asking again.
    """
    by_group: dict[str, list[dict[str, Any]]] = {}
    unchecked: set[str] = set()
    for group, message, checked in batch:
        if not checked:
            unchecked.add(group)
            if redis is not None and message.get("notify_channel"):
                await _announce(redis, message)
        by_group.setdefault(group, []).append(message)
    if layer is None:
        return
    for group, messages in by_group.items():
        send = layer.group_send if group in unchecked else layer.send_to_members
        await _send(send, group, messages[0] if len(messages) == 1 else batch_message(messages))


async def _send(send: Any, group: str, message: dict[str, Any]) -> None:
    try:
        await send(group, message)
    except Exception:  # a down Redis must not stop the next message
        logger.warning("event publish failed", exc_info=True)


async def _announce(redis: aioredis.Redis, message: dict[str, Any]) -> None:
    try:
        await redis.publish(message["notify_channel"], completion_body(message))
    except Exception:  # waiters re-check the database
        logger.warning("completion publish failed", exc_info=True)


def completion_body(message: dict[str, Any]) -> str:
    return json.dumps(message, cls=DjangoJSONEncoder)


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
