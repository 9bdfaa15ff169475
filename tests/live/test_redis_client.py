"""The channel layer's Redis connections must let a cancelled command end.

When a socket closes, Channels cancels the consumer's pending channel-layer receive and waits
for it. With a socket timeout set, redis-py bounds each send with `asyncio.wait_for`, which on
Python 3.11 swallows a cancellation that lands as the send completes (about one cancel in
ten, here): the receive runs on and the consumer never finishes. This pins the connection
options in settings.CHANNEL_LAYERS to ones that keep cancellation working.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis
from django.conf import settings

pytestmark = pytest.mark.e2e

ATTEMPTS = 200


def _channel_layer_client() -> aioredis.Redis:
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    host: dict[str, Any] = dict(layer["CONFIG"]["hosts"][0])
    return aioredis.Redis.from_url(host.pop("address"), **host)


async def _cancel_during_first_command(delay: float) -> str:
    client = _channel_layer_client()
    try:

        async def first_command() -> Any:
            return await client.bzpopmin("autoflow:test:never", timeout=1)

        command = asyncio.create_task(first_command())
        await asyncio.sleep(delay)
        command.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(command), timeout=3)
        except asyncio.CancelledError:
            return "cancelled"
        except TimeoutError:
            command.cancel()
            return "stuck"
        return "swallowed"
    finally:
        await client.aclose()


def test_a_command_cancelled_while_it_is_sent_is_cancelled() -> None:
    async def scenario() -> Counter[str]:
        # The window is the connection handshake and the first send, a few ms long.
        return Counter(
            [await _cancel_during_first_command(random.uniform(0, 0.004)) for _ in range(ATTEMPTS)]
        )

    assert asyncio.run(scenario()) == {"cancelled": ATTEMPTS}
