"""The cache backend: django-redis's, its client built once per process.

Django keeps one cache backend per thread, and under ASGI one per request: `caches` is an
asgiref `Local` bound to the request's context. So every API request built django-redis's
client, its connection factory and a redis-py client (~110 µs, with redis-py's event
listeners) only to count one rate-limit hit, and left them in reference cycles for the garbage
collector. A django-redis client is thread-safe (redis-py's pool hands each command a
connection of its own, and starts a new pool in a forked child), so the backends of one
configuration share one client; what stays per request is the small backend object.
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import RedisError

from autoflow.bounded import BoundedCache


class RedisCache(DjangoRedisCache):
    _shared_clients: ClassVar[dict[str, DefaultClient]] = {}
    _shared_clients_lock: ClassVar[threading.Lock] = threading.Lock()
    _client: DefaultClient | None

    @property
    def client(self) -> DefaultClient:
        if self._client is None:
            # One key per configuration: the server and the parameters, as settings give them.
            key = repr((self._server, sorted(self._params.items(), key=repr)))
            with self._shared_clients_lock:
                shared = self._shared_clients.get(key)
                if shared is None:
                    shared = self._shared_clients[key] = self._client_cls(
                        self._server, self._params, self
                    )
            self._client = shared
        return self._client


# A hit on a counter: add `delta`, and give the key an expiry if it has none (this made it).
# Atomic.
COUNT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return count
"""
# Counter keys this process remembers at most, the oldest forgotten first: a bound on memory
# (and no work that grows with it) under a flood of anonymous clients, each keyed by address.
KNOWN_COUNTERS_MAX = 10_000


class RateLimitCache(RedisCache):
    """The cache django-ratelimit counts in (`RATELIMIT_USE_CACHE`): one round trip a hit, not two.

    django-ratelimit counts a hit with `add(key, 1, timeout)` and, unless that made the key,
    `incr(key)`: two round trips to Redis for every hit of a window but its first, on every API
    request and webhook call. This backend remembers, per process, the counters it has seen
    until their timeout: for those `add` answers False without asking, and `incr` counts with
    `COUNT_SCRIPT`, which also makes a key that is gone (expired early, flushed, lost with a
    Redis restart) with the expiry `add` would have given it. So a count is what two round
    trips would have made it, in one. Only rate-limit counters belong here: no other key of
    this cache may be deleted or changed behind a counter's back and expect `add` to notice.
    """

    # key -> (remembered until, timeout)
    _known: ClassVar[BoundedCache[str, tuple[float, int]]] = BoundedCache(KNOWN_COUNTERS_MAX)
    _script: ClassVar[Script | None] = None

    def add(
        self,
        key: str,
        value: Any,
        timeout: float | object | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
    ) -> bool:
        full_key = str(self.client.make_key(key, version=version))
        known = self._known.get(full_key)
        if known is not None and known[0] > time.monotonic():
            return False
        added: bool | None = super().add(key, value, timeout, version=version, client=client)
        seconds = self.default_timeout if timeout is DEFAULT_TIMEOUT else timeout
        if added is not None and isinstance(seconds, int | float) and seconds >= 1:
            self._remember(full_key, int(seconds))
        return bool(added)

    def incr(
        self, key: str, delta: int = 1, version: int | None = None, client: Any = None
    ) -> int | None:
        full_key = str(self.client.make_key(key, version=version))
        known = self._known.get(full_key)
        if known is None:
            count: int | None = super().incr(key, delta, version=version, client=client)
            return count
        try:
            redis = client or self.client.get_client(write=True)
            return int(
                self._count_script(redis)(keys=[full_key], args=[delta, known[1]], client=redis)
            )
        except RedisError:
            if not self._ignore_exceptions:
                raise
            if self._log_ignored_exceptions:
                self.logger.exception("Exception ignored")
            return None

    @classmethod
    def _count_script(cls, redis: Redis) -> Script:
        """`COUNT_SCRIPT`, sent by its digest (EVALSHA) once Redis has it."""
        if cls._script is None:
            cls._script = redis.register_script(COUNT_SCRIPT)
        return cls._script

    def _remember(self, full_key: str, seconds: int) -> None:
        self._known.put(full_key, (time.monotonic() + seconds, seconds))
