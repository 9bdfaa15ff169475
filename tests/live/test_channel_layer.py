"""The production channel layer (channels-redis): idle receivers live, empty groups cost little."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from autoflow.channel_layer import RedisChannelLayer as ChannelLayer

IDLE_ROUNDS = 3
pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="the production channel layer needs Redis"
)


def test_an_idle_receive_outlives_the_blocking_pop_rounds() -> None:
    # given: the Redis channel layer the web processes use
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)

    async def idle_then_message() -> dict[str, Any]:
        channel = await layer.new_channel()
        receiving = asyncio.ensure_future(layer.receive(channel))
        # when: nothing arrives for several of channels-redis' 5 s BZPOPMIN rounds
        for _ in range(IDLE_ROUNDS):
            await asyncio.sleep(layer.brpop_timeout + 0.5)
            # then: the receive is still waiting (a read timeout would have ended it)
            assert not receiving.done(), receiving.exception()
        await layer.send(channel, {"type": "hello"})
        message: dict[str, Any] = await asyncio.wait_for(receiving, 10)
        return message

    assert async_to_sync(idle_then_message)()["type"] == "hello"


def test_a_group_send_finds_an_empty_group_in_one_round_trip_and_reaches_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = get_channel_layer()
    assert isinstance(layer, ChannelLayer)
    commands: list[str] = []

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        client = layer.connection(0)
        original = client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            commands.append(str(args[0]))
            return await original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counted)
        group = f"test.{uuid.uuid4().hex}"
        await layer.group_send(group, {"type": "nobody.listens"})
        empty = list(commands)
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "hello"})
        message: dict[str, Any] = await asyncio.wait_for(layer.receive(channel), 5)
        await layer.group_discard(group, channel)
        return empty, message

    empty, message = async_to_sync(scenario)()
    assert empty == ["ZRANGEBYSCORE"]
    assert message["type"] == "hello"


def test_a_member_past_the_group_expiry_does_not_count() -> None:
    layer = get_channel_layer()
    assert isinstance(layer, ChannelLayer)

    async def scenario() -> tuple[bool, bool]:
        group = f"test.{uuid.uuid4().hex}"
        client = layer.connection(0)
        key = layer._group_key(group)
        # channels_redis drops a member scored at now - group_expiry or earlier.
        await client.zadd(key, {"gone": int(time.time()) - layer.group_expiry - 1})
        expired = await layer.group_has_members(group)
        await client.zadd(key, {"here": time.time()})
        joined = await layer.group_has_members(group)
        await client.delete(key)
        return expired, joined

    assert async_to_sync(scenario)() == (False, True)
