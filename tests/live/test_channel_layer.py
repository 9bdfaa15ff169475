"""The production channel layer (channels-redis) keeps an idle receiver alive."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

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
