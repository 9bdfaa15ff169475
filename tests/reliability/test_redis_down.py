"""Fault: Redis down under a running web process (SPEC.md "Dependencies down").

A PRIVATE redis-server (free loopback port; the shared one is never touched) backs a daphne
process on the test database. While it is stopped, execute and webhooks answer as usual (the
database is the queue of record), the rate limit fails open and `/health` says `degraded`
with 200. Redis then starts again, empty, with a worker and beat: the sweeper re-enqueues
what was accepted meanwhile, and every execution succeeds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection

from accounts.models import User
from accounts.tokens import tokens_issue
from executions.models import TERMINAL_STATUSES, Execution
from tests.executions.conftest import FAST_ENGINE_ENV, EngineProcesses, make_workflow, wait_for
from tests.reliability.test_faults import PrivateRedis
from tests.servers import ServerUrl, daphne_server, database_url_from_settings, server_env
from triggers.services import webhook_token_ensure
from workflows.models import Workflow

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GENERAL_LIMIT = 3
RESPOND_BOUND_SECONDS = 2
# "As usual": far below kombu's ~6 s of broker reconnect attempts per publish.
PROMPT_SECONDS = 3.0


def _graph(**trigger_params: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": trigger_params},
            {"id": "log", "type": "debug", "params": {"message": "ran"}},
        ],
        "edges": [{"source": "t", "target": "log"}],
    }


def _webhook_workflow(owner: User, respond: str) -> Workflow:
    workflow = make_workflow(owner, _graph(mode="webhook", respond=respond))
    Workflow.objects.filter(pk=workflow.pk).update(active=True)
    webhook_token_ensure(workflow=workflow)
    return workflow


@pytest.fixture
def redis_and_web(
    transactional_db: Any,
) -> Iterator[tuple[PrivateRedis, ServerUrl, dict[str, str]]]:
    """A private Redis and a daphne on it (no worker yet); yields them and the engine's env."""
    redis_server = PrivateRedis()
    redis_server.start()
    database_url = database_url_from_settings(connection.settings_dict)
    overrides = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "RATE_LIMIT_GENERAL": f"{GENERAL_LIMIT}/15m",
        "WEBHOOK_RESPOND_TIMEOUT_SECONDS": str(RESPOND_BOUND_SECONDS),
        **FAST_ENGINE_ENV,
    }
    try:
        with daphne_server(**overrides) as web:
            yield redis_server, web, server_env(**overrides)
    finally:
        redis_server.kill()
        shutil.rmtree(redis_server.directory, ignore_errors=True)


def test_redis_down_execute_and_webhooks_accepted_then_run_once_redis_returns(
    redis_and_web: tuple[PrivateRedis, ServerUrl, dict[str, str]], owner: User
) -> None:
    redis_server, web, engine_env = redis_and_web
    auth = {"Authorization": f"Bearer {tokens_issue(user=owner)['access']}"}
    manual = make_workflow(owner, _graph(mode="manual"))
    immediate = _webhook_workflow(owner, "immediately")
    on_complete = _webhook_workflow(owner, "on_complete")
    # given: the general limit is live while Redis is up (this user has used it all)
    statuses = [
        requests.get(f"{web}/api/workflows", headers=auth, timeout=10).status_code
        for _ in range(GENERAL_LIMIT + 1)
    ]
    assert statuses == [200] * GENERAL_LIMIT + [429]

    # when: Redis stops
    redis_server.kill()
    # then: execute answers 202 as usual: the limit fails open (logged), no 500
    accepted: list[str] = []
    for _ in range(GENERAL_LIMIT + 1):
        response = requests.post(
            f"{web}/api/workflows/{manual.pk}/execute", json={"input": {}}, headers=auth, timeout=10
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        assert response.elapsed.total_seconds() < PROMPT_SECONDS
        accepted.append(response.json()["execution_id"])
    assert "rate limit counter unavailable; failing open" in web.log_text()
    # a webhook that responds immediately: 202 at once
    response = requests.post(
        f"{web}/api/hooks/{immediate.webhook_token}", json={"n": 1}, timeout=10
    )
    assert response.status_code == 202, response.text
    assert response.elapsed.total_seconds() < PROMPT_SECONDS
    accepted.append(response.json()["execution_id"])
    # a webhook that waits for completion: nothing can run, so 202 once the bound passes
    started = time.monotonic()
    response = requests.post(
        f"{web}/api/hooks/{on_complete.webhook_token}", json={"n": 2}, timeout=30
    )
    waited = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    assert RESPOND_BOUND_SECONDS - 0.5 <= waited < RESPOND_BOUND_SECONDS + PROMPT_SECONDS
    accepted.append(response.json()["execution_id"])
    # /health: degraded (200), the database still serves
    health = requests.get(f"{web}/health", timeout=10)
    assert health.status_code == 200, health.text
    report = health.json()
    assert report["status"] == "degraded"
    assert report["checks"]["database"]["ok"] is True
    assert report["checks"]["broker"]["ok"] is False
    assert report["checks"]["cache"]["ok"] is False
    assert Execution.objects.filter(pk__in=accepted, status="queued").count() == len(accepted)

    # when: Redis starts again, empty, with a worker and beat (the sweeper re-enqueues)
    redis_server.start()
    engine = EngineProcesses(env=engine_env, started=[])
    try:
        engine.worker()
        engine.beat()

        # then: every accepted execution succeeds, within a bound
        def all_final() -> bool:
            found = Execution.objects.filter(pk__in=accepted).values_list("status", flat=True)
            return len(found) == len(accepted) and all(s in TERMINAL_STATUSES for s in found)

        wait_for(all_final, timeout=40, interval=0.5)
        executions = Execution.objects.filter(pk__in=accepted)
        assert {execution.status for execution in executions} == {"succeeded"}, [
            (execution.pk, execution.status, execution.error) for execution in executions
        ]
        # and the web process recovers by itself: the rate limit counts again
        fresh = {"Authorization": f"Bearer {tokens_issue(user=owner)['access']}"}
        statuses = [
            requests.get(f"{web}/api/workflows", headers=fresh, timeout=10).status_code
            for _ in range(GENERAL_LIMIT + 1)
        ]
        assert statuses == [200] * GENERAL_LIMIT + [429]
        health = requests.get(f"{web}/health", timeout=10).json()
        assert health["checks"]["broker"]["ok"] is True
        assert health["checks"]["cache"]["ok"] is True
    finally:
        engine.stop_all()
