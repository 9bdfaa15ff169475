"""The floor's worker side: AutoFlow's Celery app and settings with one task.

`celery -A bench.floor_celery worker` with `DJANGO_SETTINGS_MODULE=bench.floor_settings`.
`bench.floor.finish` stores the call's answer in one statement (`{a, b, total}`, computed by
PostgreSQL) and publishes the end on the waiting process's channel, as a run's end is.
"""

from __future__ import annotations

import json

import redis
from django.conf import settings
from django.db import connection

from autoflow.celery import app

TABLE = "bench_floor_call"
ANSWER = (
    f"UPDATE {TABLE} SET finished_at = now(), result = jsonb_build_object("  # noqa: S608
    "'a', body->'a', 'b', body->'b', 'total', (body->>'a')::int + (body->>'b')::int)"
    " WHERE id = %s RETURNING result"
)
_redis: redis.Redis | None = None


@app.task(name="bench.floor.finish", ignore_result=True)
def finish(call_id: str, channel: str) -> None:
    global _redis  # one client per pool child, made after the fork
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL)
    with connection.cursor() as cursor:
        cursor.execute(ANSWER, [call_id])
        (result,) = cursor.fetchone()  # jsonb as text: Django's backend leaves decoding to fields
    message = {"type": "execution.complete", "execution_id": call_id, "output": json.loads(result)}
    _redis.publish(channel, json.dumps(message))
