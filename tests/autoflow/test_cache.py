"""The cache backend builds one django-redis client per process and configuration."""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import override_settings

from autoflow.cache import RedisCache

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs the Redis server (REDIS_URL)"
)


def _caches(prefix: str) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "autoflow.cache.RedisCache",
            "LOCATION": settings.REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }


async def _backends_of_two_requests() -> list[Any]:
    async def backend() -> Any:
        return caches["default"]

    # Daphne runs each request in a task of its own, so with its own copy of the context.
    return list(
        await asyncio.gather(asyncio.create_task(backend()), asyncio.create_task(backend()))
    )


def test_the_backends_of_two_requests_share_one_client_and_one_count():
    with override_settings(CACHES=_caches(f"test-{secrets.token_hex(4)}")):
        first, second = asyncio.run(_backends_of_two_requests())
        assert isinstance(first, RedisCache)
        assert first is not second  # Django's per-context backends, as under ASGI
        assert first.client is second.client
        try:
            assert first.add("hits", 1, 60) is True
            assert second.incr("hits") == 2
            assert first.get("hits") == 2
        finally:
            first.delete("hits")


def test_another_configuration_gets_a_client_of_its_own():
    with override_settings(CACHES=_caches(f"test-{secrets.token_hex(4)}")):
        one: Any = caches.create_connection("default")
        one_client = one.client
    with override_settings(CACHES=_caches(f"test-{secrets.token_hex(4)}")):
        other: Any = caches.create_connection("default")
        assert other.client is not one_client
        try:
            one.set("key", "one", 60)
            assert other.get("key") is None  # each client makes its own backend's keys
            assert one.get("key") == "one"
        finally:
            one.delete("key")
