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
from typing import ClassVar

from django_redis.cache import RedisCache as DjangoRedisCache
from django_redis.client import DefaultClient


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
