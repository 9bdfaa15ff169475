"""Executions' ends, heard in the process that waits for them (a webhook answering on completion).

A waiter gets a future and a channel name from `subscribe()`, names that channel as the run's
`notify_channel` when it starts the run, and gives the future back with `unsubscribe()`.
Futures live in `events.local_waiters`, and two things resolve them:

- the embedded default runs the worker in this process: its event publisher resolves them;
- with Redis, each web process keeps one pub/sub connection per event loop, subscribed once to
  a channel of its own; the worker PUBLISHes a run's end on the run's `notify_channel`
  (`events`), and the connection's reader resolves the futures waiting for it.

Before, each waiter subscribed to a channel per execution and unsubscribed after: two Redis
round trips per webhook call (~6 % of the web process's CPU under the W1 load). Before that, a
channel-layer channel per waiting request cost ~7 %. A lost message or a down Redis only
delays an answer: waiters re-check the database as well (`triggers.webhooks`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
import weakref
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from executions.events import completion_channel, local_waiters

logger = logging.getLogger(__name__)

RECONNECT_PAUSE_SECONDS = 1.0


class _Subscriber:
    """One pub/sub connection on one event loop, subscribed to this loop's own channel."""

    def __init__(self) -> None:
        self.name = f"autoflow-completions-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.channel_name = completion_channel(self.name)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting = asyncio.Lock()  # concurrent first waiters share one connection
        self._retry_at = 0.0  # after a failed connect, calls do not each wait for another

    async def channel(self) -> str:
        """This loop's channel, once subscribed; "" while Redis cannot be reached."""
        if self._pubsub is not None:
            return self.channel_name
        if time.monotonic() < self._retry_at:
            return ""
        try:
            async with self._connecting:
                if self._pubsub is None:
                    client = aioredis.Redis.from_url(
                        settings.REDIS_URL,
                        socket_connect_timeout=5,
                        socket_keepalive=True,
                        client_name=self.name,
                    )
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self.channel_name)
                    self._pubsub = pubsub
                    self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
        except Exception:  # a down Redis: the database re-check still answers
            logger.warning("could not subscribe to completions", exc_info=True)
            self._retry_at = time.monotonic() + RECONNECT_PAUSE_SECONDS
            return ""
        return self.channel_name

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


_subscribers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Subscriber] = (
    weakref.WeakKeyDictionary()
)


def _subscriber() -> _Subscriber:
    loop = asyncio.get_running_loop()
    found = _subscribers.get(loop)
    if found is None:
        found = _subscribers[loop] = _Subscriber()
    return found


async def subscribe(execution_id: object) -> tuple[asyncio.Future[Any], str]:
    """A future resolved with the execution's `execution.complete` message, and the channel
    to start the execution with as its `notify_channel` ("" without Redis)."""
    future = local_waiters.add(execution_id, asyncio.get_running_loop())
    channel = await _subscriber().channel() if settings.REDIS_URL else ""
    return future, channel


def unsubscribe(execution_id: object, future: asyncio.Future[Any]) -> None:
    local_waiters.discard(execution_id, future)
