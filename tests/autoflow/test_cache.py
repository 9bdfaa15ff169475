"""The cache backend builds one django-redis client per process and configuration."""

from __future__ import annotations

import asyncio
import os
import secrets
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches
from django.test import RequestFactory, override_settings
from django_ratelimit.core import EXPIRATION_FUDGE, get_usage
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from autoflow.bounded import BoundedCache
from autoflow.cache import RateLimitCache, RedisCache
from tests.servers import closed_port

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


def _rate_limit_caches(prefix: str, location: str) -> dict[str, Any]:
    counters = {
        "BACKEND": "autoflow.cache.RateLimitCache",
        "LOCATION": location,
        "KEY_PREFIX": prefix,
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1, "IGNORE_EXCEPTIONS": True},
    }
    return {**_caches(prefix), "ratelimit": counters}


def _hit(group: str, key: str, rate: str = "100/m") -> int | None:
    usage = get_usage(
        RequestFactory().get("/"),
        group=group,
        key=lambda _group, _request: key,
        rate=rate,
        increment=True,
    )
    return None if usage is None else int(usage["count"])


def test_rate_limit_hits_take_one_round_trip_each_once_the_counter_is_known(monkeypatch):
    sent: list[str] = []
    original = Redis.execute_command

    def counted(self: Redis, *args: Any, **options: Any) -> Any:
        sent.append(str(args[0]).upper())
        return original(self, *args, **options)

    prefix = f"test-{secrets.token_hex(4)}"
    with override_settings(CACHES=_rate_limit_caches(prefix, settings.REDIS_URL)):
        monkeypatch.setattr(Redis, "execute_command", counted)
        assert [_hit("g", "client") for _ in range(2)] == [1, 2]
        sent.clear()
        counts = [_hit("g", "client") for _ in range(5)]
        per_hit = list(sent)
        assert [_hit("other", "client"), _hit("g", "someone else")] == [1, 1]
        caches["ratelimit"].clear()

    assert counts == [3, 4, 5, 6, 7]
    # django-ratelimit's add and incr were two round trips a hit; here one (the script's digest).
    assert per_hit == ["EVALSHA"] * 5


def test_a_counter_gone_behind_the_process_back_starts_again_with_its_expiry():
    prefix = f"test-{secrets.token_hex(4)}"
    with override_settings(CACHES=_rate_limit_caches(prefix, settings.REDIS_URL)):
        counters: Any = caches["ratelimit"]
        assert [_hit("g", "client", "100/h") for _ in range(3)] == [1, 2, 3]
        [key] = counters.keys("*")
        full_key = counters.client.make_key(key)
        redis = counters.client.get_client()
        assert 3600 <= redis.ttl(full_key) <= 3600 + EXPIRATION_FUDGE
        redis.delete(full_key)  # as a Redis restart or a flush would

        assert _hit("g", "client", "100/h") == 1
        assert 3600 <= redis.ttl(full_key) <= 3600 + EXPIRATION_FUDGE
        assert _hit("g", "client", "100/h") == 2
        counters.clear()


def test_a_known_counter_on_an_unreachable_redis_fails_open_or_raises_as_configured():
    prefix = f"test-{secrets.token_hex(4)}"
    with override_settings(CACHES=_rate_limit_caches(prefix, settings.REDIS_URL)):
        assert [_hit("g", "client") for _ in range(2)] == [1, 2]  # now known to this process
        live: Any = caches["ratelimit"]
        live.clear()
    down = _rate_limit_caches(prefix, f"redis://127.0.0.1:{closed_port()}/0")
    with override_settings(CACHES=down):
        assert _hit("g", "client") is None  # django-ratelimit's "unavailable": we fail open
    down["ratelimit"]["OPTIONS"]["IGNORE_EXCEPTIONS"] = False
    with override_settings(CACHES=down), pytest.raises(RedisConnectionError):
        _hit("g", "client")


def test_the_counters_remembered_are_bounded_the_oldest_forgotten_first(monkeypatch):
    monkeypatch.setattr(RateLimitCache, "_known", BoundedCache(3))
    prefix = f"test-{secrets.token_hex(4)}"
    with override_settings(CACHES=_rate_limit_caches(prefix, settings.REDIS_URL)):
        for client in ("a", "b", "c", "d"):
            assert _hit("g", client) == 1
        assert len(RateLimitCache._known) == 3
        # "a" was forgotten: its next hit asks Redis again (add), and still counts right.
        assert [_hit("g", "a"), _hit("g", "d")] == [2, 2]
        caches["ratelimit"].clear()
