"""Worker liveness: each worker process writes a heartbeat the health check can count.

In production the heartbeats live in a Redis sorted set shared by every machine; in the
embedded default the worker runs in the server's own process, so a dict serves.
"""

from __future__ import annotations

import contextlib
import threading
import time

import redis
from django.conf import settings

HEARTBEAT_KEY = "autoflow:workers"
HEARTBEAT_INTERVAL_SECONDS = 10.0
LIVE_WINDOW_SECONDS = 30.0

_local_heartbeats: dict[str, float] = {}
_stop = threading.Event()
_clients: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One Redis client per process and URL for operational reads and writes."""
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        _clients[url] = client
    return client


def heartbeat(hostname: str) -> None:
    """Record that `hostname` is alive now."""
    now = time.time()
    if settings.REDIS_URL:
        client = redis_client()
        client.zadd(HEARTBEAT_KEY, {hostname: now})
        client.zremrangebyscore(HEARTBEAT_KEY, 0, now - 10 * LIVE_WINDOW_SECONDS)
    else:
        _local_heartbeats[hostname] = now


def live_worker_count() -> int:
    """How many workers sent a heartbeat within the live window."""
    cutoff = time.time() - LIVE_WINDOW_SECONDS
    if settings.REDIS_URL:
        return int(redis_client().zcount(HEARTBEAT_KEY, cutoff, "+inf"))
    return sum(1 for seen in _local_heartbeats.values() if seen >= cutoff)


def heartbeat_start(hostname: str) -> None:
    """Beat every few seconds from a daemon thread until `heartbeat_stop`."""
    _stop.clear()

    def beat() -> None:
        while not _stop.is_set():
            # Redis down: the health check reports it; keep trying.
            with contextlib.suppress(redis.RedisError):
                heartbeat(hostname)
            _stop.wait(HEARTBEAT_INTERVAL_SECONDS)

    threading.Thread(target=beat, name="autoflow-heartbeat", daemon=True).start()


def heartbeat_stop() -> None:
    _stop.set()
