"""Executions' ends, heard in the process that waits for them (a webhook answering on completion).

A waiter gets a future from `subscribe()` and gives it back with `unsubscribe()`. Futures live
in `events.local_waiters`, and two things resolve them:

- the embedded default runs the worker in this process: its event publisher resolves them;
- with Redis, the worker PUBLISHes each end once on `autoflow:completion:<execution id>`
  (`events`), and each web process keeps one pub/sub connection per event loop,
  subscribed to exactly the executions it waits for, whose reader resolves them.

This replaced a channel-layer channel per waiting request (a new channel, a group join and
leave, a blocking pop with its backup key), which profiled at about 7 % of the web process's
CPU per W1 call. A lost message or a down Redis only delays an answer: waiters re-check the
database as well (`triggers.webhooks`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from executions.events import completion_channel, local_waiters

logger = logging.getLogger(__name__)

RECONNECT_PAUSE_SECONDS = 1.0


class _Subscriber:
    """One pub/sub connection on one event loop, subscribed to the executions waited for."""

    def __init__(self) -> None:
        self.name = f"autoflow-completions-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()  # concurrent first waiters share one connection
        self._waiting: dict[str, int] = {}  # execution id -> waiters on this loop

    async def _connected(self) -> Any:
        async with self._connecting:
            if self._pubsub is None:
                client = aioredis.Redis.from_url(
                    settings.REDIS_URL,
                    socket_connect_timeout=5,
                    socket_keepalive=True,
                    client_name=self.name,
                )
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                # A channel of its own keeps the connection subscribed (so the reader can
                # block) while no execution is waited for.
                await pubsub.subscribe(completion_channel(f"idle:{self.name}"))
                self._pubsub = pubsub
                self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
        return self._pubsub

    async def _read(self, pubsub: Any) -> None:
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception:  # redis-py reconnects and resubscribes on the next read
                logger.warning("completion subscription interrupted", exc_info=True)
                await asyncio.sleep(RECONNECT_PAUSE_SECONDS)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                body = json.loads(message["data"])
                local_waiters.resolve(str(body["execution_id"]), body)
            except (ValueError, KeyError, TypeError):
                logger.warning("ignored a malformed completion message")

    async def subscribe(self, execution_id: str) -> None:
        count = self._waiting.get(execution_id, 0)
        self._waiting[execution_id] = count + 1
        if count:
            return
        try:
            pubsub = await self._connected()
            await pubsub.subscribe(completion_channel(execution_id))
        except Exception:  # a down Redis: the database re-check still answers
            logger.warning("could not subscribe to an execution's completion", exc_info=True)

    async def unsubscribe(self, execution_id: str) -> None:
        count = self._waiting.pop(execution_id, 0) - 1
        if count > 0:
            self._waiting[execution_id] = count
            return
        if self._pubsub is None:
            return
        try:
            await self._pubsub.unsubscribe(completion_channel(execution_id))
        except Exception:
            logger.warning("could not unsubscribe from an execution's completion", exc_info=True)


_subscribers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Subscriber] = (
    weakref.WeakKeyDictionary()
)


def _subscriber() -> _Subscriber:
    loop = asyncio.get_running_loop()
    found = _subscribers.get(loop)
    if found is None:
        found = _subscribers[loop] = _Subscriber()
    return found


async def subscribe(execution_id: object) -> asyncio.Future[Any]:
    """A future resolved with the execution's `execution.complete` message."""
    future = local_waiters.add(execution_id, asyncio.get_running_loop())
    if settings.REDIS_URL:
        await _subscriber().subscribe(str(execution_id))
    return future


async def unsubscribe(execution_id: object, future: asyncio.Future[Any]) -> None:
    local_waiters.discard(execution_id, future)
    if settings.REDIS_URL:
        await _subscriber().unsubscribe(str(execution_id))
