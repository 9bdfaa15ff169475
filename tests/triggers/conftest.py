"""Trigger fixtures: webhook/schedule workflows, and one real Celery worker per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import connection

from accounts.models import User
from tests.executions.conftest import FAST_ENGINE_ENV, EngineProcesses
from tests.servers import database_url_from_settings, server_env
from workflows.models import Workflow
from workflows.services import workflow_create


def trigger_graph(trigger: dict[str, Any], fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trigger `t` followed by one transform `shape` (the single leaf)."""
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": trigger},
            {
                "id": "shape",
                "type": "transform",
                "params": {"fields": fields or {"total": "{{ input.body.a + input.body.b }}"}},
            },
        ],
        "edges": [{"source": "t", "target": "shape"}],
    }


def webhook_workflow(owner: User, *, active: bool = True, **trigger: Any) -> Workflow:
    """An active webhook workflow created through the services (so its token is armed)."""
    fields = trigger.pop("fields", None)
    return workflow_create(
        owner=owner,
        name="hook",
        graph=trigger_graph({"mode": "webhook", **trigger}, fields),
        active=active,
    )


@pytest.fixture(scope="module")
def trigger_worker(django_db_setup: Any, django_db_blocker: Any) -> Iterator[EngineProcesses]:
    """One real prefork Celery worker on the test database, shared by a module's tests."""
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        pytest.fail("the webhook end-to-end tests need REDIS_URL (a real Redis)")
    redis.Redis.from_url(redis_url).flushdb()
    with django_db_blocker.unblock():
        database_url = database_url_from_settings(connection.settings_dict)
    env = server_env(DATABASE_URL=database_url, REDIS_URL=redis_url, **FAST_ENGINE_ENV)
    processes = EngineProcesses(env=env, started=[])
    try:
        processes.worker()
        yield processes
    finally:
        processes.stop_all()
