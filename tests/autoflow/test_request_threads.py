"""Requests run their sync code on a few long-lived threads that keep their connections."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from accounts.models import User
from accounts.tokens import tokens_issue
from autoflow.request_threads import RequestThreads
from tests.live.conftest import make_execution, make_workflow
from tests.servers import ServerUrl, daphne_server, database_url_from_settings

THREADS = 2
# libpq names every connection the server under test opens (other tests' servers may be up).
APPLICATION_NAME = f"autoflow-request-threads-{uuid.uuid4().hex[:8]}"


def _daphne_backends(started_before: Any = None) -> list[int]:
    """The backends serving the daphne under test."""
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
    params: list[Any] = [APPLICATION_NAME]
    if started_before is not None:
        query += " AND backend_start < %s"
        params.append(started_before)
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def web(transactional_db: Any) -> Iterator[ServerUrl]:
    if connection.vendor != "postgresql":
        pytest.skip("counts PostgreSQL backends")
    database_url = database_url_from_settings(connection.settings_dict)
    with daphne_server(
        DATABASE_URL=database_url,
        WEB_REQUEST_THREADS=str(THREADS),
        PGAPPNAME=APPLICATION_NAME,
    ) as url:
        yield url


@pytest.mark.e2e
def test_requests_share_a_few_kept_connections_and_survive_their_loss(
    web: ServerUrl, owner: User
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {tokens_issue(user=owner)['access']}"

    def listed() -> int:
        return session.get(f"{web}/api/workflows", timeout=10).status_code

    assert [listed() for _ in range(2 * THREADS)] == [200] * (2 * THREADS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        (warmed_at,) = cursor.fetchone()

    assert [listed() for _ in range(20)] == [200] * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(lambda _: listed(), range(32))) == [200] * 32

    kept = _daphne_backends(started_before=warmed_at)
    assert 1 <= len(kept) <= THREADS  # opened before the 52 requests, still serving
    assert len(_daphne_backends()) <= THREADS
    with connection.cursor() as cursor:  # as a database restart would
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [kept])
    assert [listed() for _ in range(2 * THREADS)] == [200] * (2 * THREADS)


@pytest.mark.e2e
def test_sockets_database_calls_share_the_kept_connections(web: ServerUrl, owner: User) -> None:
    execution = make_execution(make_workflow(owner), status="succeeded")
    protocols = [
        Subprotocol("autoflow.v1"),
        Subprotocol(f"bearer.{tokens_issue(user=owner)['access']}"),
    ]
    with connect(web.replace("http://", "ws://", 1) + "/ws", subprotocols=protocols) as socket:

        def until(kind: str) -> dict[str, Any]:
            while True:
                message: dict[str, Any] = json.loads(socket.recv(timeout=10))
                assert message["type"] != "error", message
                if message["type"] == kind:
                    return message

        def watch_once() -> None:
            body = {"type": "subscribe:execution", "execution_id": str(execution.pk)}
            socket.send(json.dumps(body))
            assert until("execution:complete")["status"] == "succeeded"
            socket.send(json.dumps({**body, "type": "unsubscribe:execution"}))

        until("connected")
        watch_once()
        opened_before = _sessions_opened()
        for _ in range(10):  # each one: the visibility check, the snapshot, the log read
            watch_once()

        # They ran on a request thread, on the connection it kept: no new session was opened
        # (Django's per-call connections opened and closed at least 30). The bound leaves room
        # for another test's servers still winding down.
        assert _sessions_opened() - opened_before < 5
        assert len(_daphne_backends()) <= THREADS


def _sessions_opened() -> int:
    """Sessions ever opened on the test database (PostgreSQL counts them, PG 14+)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_clear_snapshot(), sessions FROM pg_stat_database "
            "WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[1])


def test_a_request_takes_the_least_busy_thread_and_keeps_it() -> None:
    threads = RequestThreads(2)

    async def thread_of_each_call() -> set[str]:
        import threading

        names = set()
        for _ in range(3):
            names.add(await sync_to_async(lambda: threading.current_thread().name)())
            await asyncio.sleep(0)
        return names

    async def requests_at_once() -> list[set[str]]:
        async def one() -> set[str]:
            async with threads.context():
                return await thread_of_each_call()

        return list(await asyncio.gather(one(), one(), one()))

    first, second, third = async_to_sync(requests_at_once)()

    assert len(first) == len(second) == len(third) == 1  # each request stays on one thread
    assert first != second  # two requests at once: two threads
    assert {*first, *second, *third} == {*first, *second}  # never more than two
    assert all(name.startswith("autoflow-request-") for name in first | second)


@pytest.fixture
def started_receivers_restored() -> Iterator[None]:
    from django.core.signals import request_started

    from autoflow.request_threads import REQUEST_STARTED_RECEIVERS

    yield
    for receiver in REQUEST_STARTED_RECEIVERS:
        request_started.connect(receiver)


def test_a_request_starts_in_its_first_hop_not_a_hop_of_its_own(
    monkeypatch: pytest.MonkeyPatch, started_receivers_restored: None
) -> None:
    from asgiref.testing import ApplicationCommunicator

    from autoflow import request_threads
    from autoflow.handlers import ASGIHandler
    from autoflow.request_threads import OnRequestThreads

    threads = RequestThreads(1)
    application = OnRequestThreads(ASGIHandler(), threads)
    (executor,) = threads._executors
    real_submit = executor.submit
    hops: list[str] = []

    def counting_submit(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(repr(fn) + repr(args))
        return real_submit(fn, *args, **kwargs)

    started_on: list[str] = []

    def started(**_: Any) -> None:
        import threading

        started_on.append(threading.current_thread().name)

    monkeypatch.setattr(executor, "submit", counting_submit)
    monkeypatch.setattr(request_threads, "REQUEST_STARTED_RECEIVERS", (started,))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api",
        "raw_path": b"/api",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }

    async def get_api() -> int:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        await communicator.receive_output(10)  # the body
        await communicator.wait(10)
        return int(start["status"])

    for _ in range(2):
        hops.clear()
        assert async_to_sync(get_api)() == 200
        # The view's, which renders the DRF response too, and the response's close(). Django's
        # handler renders in a hop of its own, and `request_started` had one.
        assert len(hops) == 2, "\n".join(hops)
        assert "started_then_called" in hops[0]
    assert len(started_on) == 2
    assert all(name.startswith("autoflow-request-") for name in started_on)
