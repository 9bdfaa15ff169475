"""B2's worker: a no-op Celery task on Redis with no result backend; it counts completions in
Redis so the publisher can time first publish → last completion."""

from __future__ import annotations

import os

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
COUNTER_KEY = "bench:b2:done"

app = Celery("bench_noop", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    result_backend=None,
    worker_prefetch_multiplier=4,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_counter = redis.Redis.from_url(REDIS_URL)


@app.task(name="bench.noop")
def noop() -> None:
    _counter.incr(COUNTER_KEY)
