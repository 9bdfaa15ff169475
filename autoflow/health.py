"""Dependency checks for `GET /health`: each `{ok, latency_ms, error?}`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache
from django.db import connection

from autoflow.workers import live_worker_count, redis_client

Check = dict[str, Any]


def _timed(probe: Callable[[], dict[str, Any] | None]) -> Check:
    started = time.perf_counter()
    try:
        extra = probe() or {}
    except Exception as error:
        return {
            "ok": False,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "error": f"{type(error).__name__}: {error}"[:300],
        }
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2), **extra}


def check_database() -> Check:
    def probe() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    return _timed(probe)


def check_broker() -> Check:
    def probe() -> None:
        if settings.REDIS_URL:
            redis_client().ping()

    return _timed(probe)


def check_cache() -> Check:
    def probe() -> None:
        if settings.REDIS_URL:
            # django-redis ignores errors by design (rate limits fail open), so ask Redis.
            redis_client().ping()
        cache.set("health:probe", "1", 10)

    return _timed(probe)


def check_channel_layer() -> Check:
    def probe() -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            raise RuntimeError("no channel layer configured")
        if settings.REDIS_URL:
            redis_client().ping()
        else:
            async_to_sync(layer.group_send)("health", {"type": "health.probe"})

    return _timed(probe)


def queue_depth() -> int | None:
    """Messages waiting in the default Celery queue; None when it cannot be read."""
    if settings.REDIS_URL:
        return int(redis_client().llen("celery"))
    from autoflow.celery import app

    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        return int(channel.queue_declare("celery", passive=True).message_count)


def check_workers() -> Check:
    count: int | None = None

    def probe() -> dict[str, Any]:
        nonlocal count
        count = live_worker_count()
        if count == 0:
            raise RuntimeError("no worker sent a heartbeat in the last 30 s")
        return {"count": count}

    result = _timed(probe)
    result.setdefault("count", count)
    return result


def check_queue() -> Check:
    depth: int | None = None

    def probe() -> dict[str, Any]:
        nonlocal depth
        depth = queue_depth()
        return {"depth": depth}

    result = _timed(probe)
    result.setdefault("depth", depth)
    return result


def health_report() -> tuple[str, dict[str, Check]]:
    """Overall status and every check; `down` only when the database is unreachable."""
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "cache": check_cache(),
        "channel_layer": check_channel_layer(),
        "workers": check_workers(),
        "queue": check_queue(),
    }
    if not checks["database"]["ok"]:
        return "down", checks
    if all(check["ok"] for check in checks.values()):
        return "ok", checks
    return "degraded", checks
