"""Faults with real processes: Redis restarted mid-run, PostgreSQL connections dropped mid-run.

Each test runs a PRIVATE redis-server on a free loopback port (the shared one is never
touched), a daphne and a Celery worker + beat on it, and the pytest test database. Runs are
started through the API; afterwards none is lost (all reach a final state), none is stuck, and
no finished node ran twice. AUTOFLOW_FULL_SIZE=1 runs more executions.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection

from accounts.models import User
from accounts.tokens import tokens_issue
from executions.models import TERMINAL_STATUSES, Execution, NodeRun
from tests.executions.conftest import (
    FAST_ENGINE_ENV,
    EngineProcesses,
    wait_for,
)
from tests.security.world import scaled
from tests.servers import (
    ServerUrl,
    daphne_server,
    database_url_from_settings,
    free_port,
    server_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

GRAPH = {
    "nodes": [
        {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
        {"id": "first", "type": "debug", "params": {"message": "first"}},
        {"id": "pause", "type": "delay", "params": {"seconds": 1}},
        {"id": "last", "type": "debug", "params": {"message": "last"}},
    ],
    "edges": [
        {"source": "t", "target": "first"},
        {"source": "first", "target": "pause"},
        {"source": "pause", "target": "last"},
    ],
}
HIGH_LIMIT = "1000000/15m"


class PrivateRedis:
    """A redis-server of our own on a free loopback port, which a test may kill and restart."""

    def __init__(self) -> None:
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        wait_for(lambda: _pings(redis.Redis.from_url(self.url)), timeout=10)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@pytest.fixture
def private_stack(
    transactional_db: Any,
) -> Iterator[tuple[PrivateRedis, ServerUrl, EngineProcesses]]:
    redis_server = PrivateRedis()
    redis_server.start()
    database_url = database_url_from_settings(connection.settings_dict)
    env = server_env(DATABASE_URL=database_url, REDIS_URL=redis_server.url, **FAST_ENGINE_ENV)
    engine = EngineProcesses(env=env, started=[])
    try:
        with daphne_server(
            DATABASE_URL=database_url,
            REDIS_URL=redis_server.url,
            RATE_LIMIT_GENERAL=HIGH_LIMIT,
            **FAST_ENGINE_ENV,
        ) as api:
            engine.worker()
            engine.beat()
            yield redis_server, api, engine
    finally:
        engine.stop_all()
        redis_server.kill()
        shutil.rmtree(redis_server.directory, ignore_errors=True)


def _execute(api: ServerUrl, token: str, workflow_id: str) -> str:
    response = requests.post(
        f"{api}/api/workflows/{workflow_id}/execute",
        json={"input": {}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def _create_workflow(api: ServerUrl, token: str) -> str:
    response = requests.post(
        f"{api}/api/workflows",
        json={"name": "fault", "graph": GRAPH},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assert_all_finished_once(execution_ids: list[str], timeout: float) -> None:
    def all_final() -> bool:
        statuses = Execution.objects.filter(pk__in=execution_ids).values_list("status", flat=True)
        return len(statuses) == len(execution_ids) and all(
            status in TERMINAL_STATUSES for status in statuses
        )

    wait_for(all_final, timeout=timeout, interval=0.5)
    executions = Execution.objects.filter(pk__in=execution_ids)
    assert {execution.status for execution in executions} == {"succeeded"}, [
        (execution.pk, execution.status, execution.error) for execution in executions
    ]
    runs = NodeRun.objects.filter(execution_id__in=execution_ids)
    assert runs.count() == 4 * len(execution_ids)
    assert all(run.status == "succeeded" for run in runs)
    # A finished node never runs again: each ran in exactly one attempt.
    assert [run for run in runs if run.attempts != 1] == []


def test_redis_restarted_mid_run_loses_no_execution(
    private_stack: tuple[PrivateRedis, ServerUrl, EngineProcesses], owner: User
):
    redis_server, api, _ = private_stack
    token = tokens_issue(user=owner)["access"]
    workflow_id = _create_workflow(api, token)
    count = scaled(3, 30)
    # given: runs in flight (most waiting on their delay)
    before = [_execute(api, token, workflow_id) for _ in range(count)]
    # when: Redis dies; execute still answers 202 (the database is the queue of record)
    redis_server.kill()
    during = [_execute(api, token, workflow_id) for _ in range(count)]
    time.sleep(2)
    redis_server.start()  # empty: every queued message and scheduled wake-up is gone
    # then: every run finishes, each node once
    _assert_all_finished_once(before + during, timeout=scaled(90, 300))


def test_postgres_connections_dropped_mid_run_lose_no_execution(
    private_stack: tuple[PrivateRedis, ServerUrl, EngineProcesses], owner: User
):
    _, api, _ = private_stack
    token = tokens_issue(user=owner)["access"]
    workflow_id = _create_workflow(api, token)
    count = scaled(4, 40)
    execution_ids = [_execute(api, token, workflow_id) for _ in range(count)]
    # when: for a few seconds, every other backend of the test database (only ours) is
    # terminated as soon as it appears: the web and worker connections die mid-query
    terminated = 0
    deadline = time.monotonic() + scaled(3, 20)
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            terminated += cursor.fetchone()[0]
        time.sleep(0.05)
    assert terminated >= 1
    # the API recovers by itself: the very next request finds a live pooled connection
    execution_ids.append(_execute(api, token, workflow_id))
    # then
    _assert_all_finished_once(execution_ids, timeout=scaled(90, 300))
