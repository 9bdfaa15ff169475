"""Completions reach waiters over one Redis pub/sub connection per loop (or a local future)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
import redis
from django.test import override_settings

from executions import completions
from executions.events import complete_message, completion_channel, local_waiters, publisher
from tests.servers import free_port

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="pub/sub delivery needs Redis"
)


def _subscribers(execution_id: object) -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return int(
        dict(client.pubsub_numsub(completion_channel(execution_id)))[
            completion_channel(execution_id).encode()
        ]
    )


def _finish(execution_id: uuid.UUID, output: object) -> None:
    publisher.send([complete_message(execution_id, "succeeded", 12, output)])


@needs_redis
def test_a_published_end_resolves_every_waiter_and_unsubscribing_leaves_no_subscription():
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        first = await completions.subscribe(execution_id)
        second = await completions.subscribe(execution_id)
        assert _subscribers(execution_id) == 1  # one connection serves the loop's waiters
        # The publisher runs in its own thread, as in a worker process.
        _finish(execution_id, {"answer": {"total": 3}})
        done, _ = await asyncio.wait({first, second}, timeout=5)
        assert done == {first, second}
        assert first.result()["output"] == {"answer": {"total": 3}}
        assert first.result()["status"] == "succeeded"
        await completions.unsubscribe(execution_id, first)
        assert _subscribers(execution_id) == 1  # the second waiter still listens
        await completions.unsubscribe(execution_id, second)
        assert _subscribers(execution_id) == 0

    asyncio.run(scenario())


@needs_redis
def test_a_waiter_hears_only_its_own_execution():
    mine, other = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        future = await completions.subscribe(mine)
        _finish(other, "not mine")
        await asyncio.sleep(0.3)
        assert not future.done()
        _finish(mine, "mine")
        await asyncio.wait_for(future, timeout=5)
        assert future.result()["output"] == "mine"
        await completions.unsubscribe(mine, future)

    asyncio.run(scenario())


def test_a_down_redis_gives_a_pending_future_instead_of_an_error():
    # Nothing listens on this loopback port: connecting is refused at once.
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        future = await completions.subscribe(execution_id)
        assert not future.done()
        await completions.unsubscribe(execution_id, future)

    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        asyncio.run(scenario())


def test_without_redis_the_in_process_publisher_resolves_the_waiter():
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        future = await completions.subscribe(execution_id)
        _finish(execution_id, [1, 2])
        await asyncio.wait_for(future, timeout=5)
        assert future.result()["output"] == [1, 2]
        await completions.unsubscribe(execution_id, future)

    with override_settings(REDIS_URL=""):
        asyncio.run(scenario())


@needs_redis
def test_a_subscription_survives_its_connection_being_killed():
    first, second = uuid.uuid4(), uuid.uuid4()
    admin = redis.Redis.from_url(os.environ["REDIS_URL"])

    async def scenario() -> None:
        future = await completions.subscribe(first)
        # Kill exactly this loop's subscription connection, found by its client name.
        name = completions._subscriber().name
        (client,) = [c for c in admin.client_list() if c["name"] == name]
        assert admin.client_kill_filter(_id=client["id"]) == 1
        await completions.unsubscribe(first, future)
        later = await completions.subscribe(second)
        await asyncio.sleep(0.2)
        _finish(second, "after the kill")
        await asyncio.wait_for(later, timeout=5)
        assert later.result()["output"] == "after the kill"
        await completions.unsubscribe(second, later)

    asyncio.run(scenario())


def test_the_reader_keeps_reading_after_a_failed_read(monkeypatch):
    # redis-py retries a dropped connection itself; past its retries the error reaches the
    # reader, which must pause and read again rather than end (and strand every waiter).
    monkeypatch.setattr(completions, "RECONNECT_PAUSE_SECONDS", 0.01)
    execution_id = uuid.uuid4()
    body = json.dumps({"type": "execution.complete", "execution_id": str(execution_id)})

    class OutageThenMessage:
        def __init__(self) -> None:
            self.replies: list[object] = [
                redis.ConnectionError("Redis is down"),
                {"type": "message", "data": body},
            ]

        async def get_message(self, **_: object) -> object:
            if not self.replies:
                await asyncio.Event().wait()  # no more messages: block like a quiet channel
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply

    async def scenario() -> None:
        future = local_waiters.add(execution_id, asyncio.get_running_loop())
        reader = asyncio.create_task(completions._Subscriber()._read(OutageThenMessage()))
        try:
            await asyncio.wait_for(future, timeout=5)
        finally:
            reader.cancel()
        assert future.result()["execution_id"] == str(execution_id)

    asyncio.run(scenario())


@needs_redis
def test_concurrent_first_waiters_share_one_connection():
    first, second = uuid.uuid4(), uuid.uuid4()
    admin = redis.Redis.from_url(os.environ["REDIS_URL"])

    async def scenario() -> None:
        futures = await asyncio.gather(completions.subscribe(first), completions.subscribe(second))
        name = completions._subscriber().name
        assert [c["name"] for c in admin.client_list() if c["name"] == name] == [name]
        assert (_subscribers(first), _subscribers(second)) == (1, 1)
        for execution_id, future in zip((first, second), futures, strict=True):
            await completions.unsubscribe(execution_id, future)

    asyncio.run(scenario())
