"""The floor's web side: AutoFlow's settings and ASGI stack with one minimal webhook-shaped view.

Served as AutoFlow's web is (`daphne autoflow.asgi:application`), with
`DJANGO_SETTINGS_MODULE=bench.floor_settings`: every setting, the middleware chain, the request
threads and the completion subscriber are AutoFlow's; only the URLconf is this module.
`POST /floor` stores the JSON body in one row, queues `bench.floor.finish` and answers with
what the task stored once it announces the end on this process's completion channel: what
`/api/hooks/{token}` with `respond: "on_complete"` does, without a graph, node runs, log lines,
templates, a token, a rate limit or a call record.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bench.floor_celery import TABLE, finish
from executions import completions

WAIT_SECONDS = 30.0


def _start(call_id: uuid.UUID, body: bytes, channel: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {TABLE} (id, body) VALUES (%s, %s::jsonb)",  # noqa: S608 - a constant
            [call_id, json.dumps(json.loads(body))],
        )
    arguments = (str(call_id), channel)
    # As AutoFlow publishes its run task: no retry, no result, the repr written out.
    options: dict[str, Any] = {"argsrepr": repr(arguments), "kwargsrepr": "{}"}
    finish.apply_async(arguments, ignore_result=True, retry=False, **options)


@csrf_exempt
async def floor_call(request: HttpRequest) -> HttpResponse:
    call_id = uuid.uuid4()
    future, channel = await completions.subscribe(call_id)
    try:
        await sync_to_async(_start)(call_id, request.body, channel)
        message = await asyncio.wait_for(future, WAIT_SECONDS)
    finally:
        completions.unsubscribe(call_id, future)
    return JsonResponse(message["output"])


urlpatterns = [path("floor", floor_call)]
