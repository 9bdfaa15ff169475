"""Completions reach waiters over one Redis pub/sub channel per loop (or a local future)."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
import redis
from django.test import override_settings

from executions import completions
from executions.events import complete_message, local_waiters, publisher
from tests.servers import free_port

needs_redis = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="pub/sub delivery needs Redis"
)


def _subscribers(channel: str) -> int:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def _finish(execution_id: uuid.UUID, output: object, channel: str = "") -> None:
    publisher.send(
        [complete_message(execution_id, "succeeded", 12, output, notify_channel=channel)]
    )


@needs_redis
def test_a_loops_waiters_share_its_one_channel_which_outlives_them():
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        first, channel = await completions.subscribe(execution_id)
        second, same = await completions.subscribe(execution_id)
        assert channel == same == completions._subscriber().channel_name
        assert _subscribers(channel) == 1
        # The publisher runs in its own thread, as in a worker process.
        _finish(execution_id, {"answer": {"total": 3}}, channel)
        done, _ = await asyncio.wait({first, second}, timeout=5)
        assert done == {first, second}
        assert first.result()["output"] == {"answer": {"total": 3}}
        assert first.result()["status"] == "succeeded"
        completions.unsubscribe(execution_id, first)
        completions.unsubscribe(execution_id, second)
        assert _subscribers(channel) == 1  # no round trip per waiter: it stays subscribed

    asyncio.run(scenario())


@needs_redis
def test_a_waiter_hears_only_its_own_execution():
    mine, other = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> None:
        future, channel = await completions.subscribe(mine)
        _finish(other, "not mine", channel)
        await asyncio.sleep(0.3)
        assert not future.done()
        _finish(mine, "mine", channel)
        await asyncio.wait_for(future, timeout=5)
        assert future.result()["output"] == "mine"
        completions.unsubscribe(mine, future)

    asyncio.run(scenario())


@needs_redis
def test_an_end_is_announced_on_its_runs_notify_channel_only():
    listener = redis.Redis.from_url(os.environ["REDIS_URL"]).pubsub()
    listener.psubscribe("autoflow:completion:*")
    try:
        confirmed = listener.get_message(timeout=5)
        assert confirmed is not None
        assert confirmed["type"] == "psubscribe"
        waited, unwaited = uuid.uuid4(), uuid.uuid4()
        _finish(unwaited, "nobody waits")
        _finish(waited, "someone waits", "autoflow:completion:test-process")
        assert publisher.wait_idle()
        heard = []
        while (message := listener.get_message(timeout=0.5)) is not None:
            execution_id = json.loads(message["data"])["execution_id"]
            if execution_id in (str(waited), str(unwaited)):  # not another run's on this Redis
                heard.append((message["channel"], execution_id))
    finally:
        listener.close()
    assert heard == [(b"autoflow:completion:test-process", str(waited))]


def test_a_down_redis_gives_a_pending_future_and_no_channel():
    # Nothing listens on this loopback port: connecting is refused at once.
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        future, channel = await completions.subscribe(execution_id)
        assert channel == ""
        assert not future.done()
        completions.unsubscribe(execution_id, future)

    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        asyncio.run(scenario())


def test_without_redis_the_in_process_publisher_resolves_the_waiter():
    execution_id = uuid.uuid4()

    async def scenario() -> None:
        future, channel = await completions.subscribe(execution_id)
        assert channel == ""
        _finish(execution_id, [1, 2])
        await asyncio.wait_for(future, timeout=5)
        assert future.result()["output"] == [1, 2]
        completions.unsubscribe(execution_id, future)

    with override_settings(REDIS_URL=""):
        asyncio.run(scenario())


@needs_redis
def test_a_subscription_survives_its_connection_being_killed():
    first, second = uuid.uuid4(), uuid.uuid4()
    admin = redis.Redis.from_url(os.environ["REDIS_URL"])

    async def scenario() -> None:
        future, channel = await completions.subscribe(first)
        # Kill exactly this loop's subscription connection, found by its client name.
        name = completions._subscriber().name
        (client,) = [c for c in admin.client_list() if c["name"] == name]
        assert admin.client_kill_filter(_id=client["id"]) == 1
        completions.unsubscribe(first, future)
        later, _ = await completions.subscribe(second)
        _finish(uuid.uuid4(), "wakes the reader, which reconnects", channel)
        for _ in range(50):  # redis-py resubscribes when the reader reconnects
            if _subscribers(channel) == 1:
                break
            await asyncio.sleep(0.1)
        _finish(second, "after the kill", channel)
        await asyncio.wait_for(later, timeout=5)
        assert later.result()["output"] == "after the kill"
        completions.unsubscribe(second, later)

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
        subscribed = await asyncio.gather(
            completions.subscribe(first), completions.subscribe(second)
        )
        name = completions._subscriber().name
        assert [c["name"] for c in admin.client_list() if c["name"] == name] == [name]
        assert {channel for _, channel in subscribed} == {completions._subscriber().channel_name}
        for execution_id, (future, _) in zip((first, second), subscribed, strict=True):
            completions.unsubscribe(execution_id, future)

    asyncio.run(scenario())


def test_after_a_failed_connect_waiters_do_not_each_try_again(monkeypatch):
    attempts: list[str] = []

    class Refused:
        def __init__(self, *args: object, **kwargs: object) -> None:
            attempts.append("connect")

        def pubsub(self, **kwargs: object) -> object:
            raise redis.ConnectionError("refused")

    monkeypatch.setattr(completions.aioredis.Redis, "from_url", Refused)
    monkeypatch.setattr(completions, "RECONNECT_PAUSE_SECONDS", 0.2)

    async def scenario() -> None:
        for _ in range(3):
            execution_id = uuid.uuid4()
            future, channel = await completions.subscribe(execution_id)
            completions.unsubscribe(execution_id, future)
            assert channel == ""
        assert attempts == ["connect"]
        await asyncio.sleep(0.25)
        future, _ = await completions.subscribe(execution_id)
        completions.unsubscribe(execution_id, future)
        assert attempts == ["connect", "connect"]

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        asyncio.run(scenario())
