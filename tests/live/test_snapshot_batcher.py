"""The per-loop snapshot batcher: concurrent reads share one query and each gets its own answer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import User
from autoflow.request_threads import RequestThreads
from live import selectors
from live.consumers import SnapshotBatcher, snapshot_batched
from tests.live.conftest import add_lines, make_execution, make_workflow

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_snapshot_reads_share_one_query_and_answer_each_caller(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a running execution with 7 lines, a finished one with 2, one with none, a gone id
    workflow = make_workflow(owner)
    running = make_execution(workflow)
    add_lines(running, 1, 7)
    done = make_execution(workflow, status="succeeded", duration_ms=5, output={"x": 1})
    add_lines(done, 1, 2)
    empty = make_execution(workflow)
    missing = str(uuid.uuid4())
    queries: list[list[str]] = []
    real = selectors.execution_snapshots

    def counted(*, execution_ids: list[str]) -> dict[str, Any]:
        queries.append(list(execution_ids))
        return real(execution_ids=execution_ids)

    monkeypatch.setattr(selectors, "execution_snapshots", counted)
    ids = [str(running.pk), str(done.pk), str(empty.pk), missing] * 25

    # when: a hundred sockets ask at once
    async def read_all() -> list[selectors.ExecutionSnapshot | None]:
        return list(await asyncio.gather(*(snapshot_batched(key) for key in ids)))

    results = async_to_sync(read_all)()

    # then: one query for the four distinct ids, and every caller got its execution's snapshot
    assert len(queries) == 1
    assert sorted(queries[0]) == sorted(set(ids))
    by_id = dict(zip(ids, results, strict=True))
    assert by_id[missing] is None
    first, second, third = by_id[str(running.pk)], by_id[str(done.pk)], by_id[str(empty.pk)]
    assert first is not None
    assert (first.last_seq, first.is_terminal) == (7, False)
    assert second is not None
    assert (second.last_seq, second.is_terminal) == (2, True)
    assert (second.status, second.duration_ms, second.output) == ("succeeded", 5, {"x": 1})
    assert third is not None
    assert third.last_seq == 0
    assert all(result is by_id[key] for key, result in zip(ids, results, strict=True))


def test_the_batcher_outlives_the_socket_that_started_it(owner: User) -> None:
    # given: two executions; each socket runs on one of the request threads (autoflow.asgi)
    workflow = make_workflow(owner)
    first, second = make_execution(workflow), make_execution(workflow)
    add_lines(second, 1, 3)
    threads = RequestThreads(2)
    batcher = SnapshotBatcher()

    async def scenario() -> selectors.ExecutionSnapshot | None:
        # when: a socket's read starts the batcher's runner, a second read queues behind it,
        # and the first socket closes (its thread context ends) before the runner is done
        async with threads.context():
            started = asyncio.ensure_future(batcher.get(str(first.pk)))
            await asyncio.sleep(0)
        queued = asyncio.ensure_future(batcher.get(str(second.pk)))
        assert await started is not None
        return await queued

    # then: the runner's next query still runs, and answers the second socket
    answer = async_to_sync(scenario)()
    assert answer is not None
    assert answer.last_seq == 3


def test_the_batchers_queries_run_on_the_request_threads(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the batcher's query records the thread it runs on
    workflow = make_workflow(owner)
    first, second = make_execution(workflow), make_execution(workflow)
    threads = RequestThreads(2)
    batcher = SnapshotBatcher()
    ran_on: list[str] = []
    real = selectors.execution_snapshots

    def recorded(*, execution_ids: list[str]) -> dict[str, Any]:
        ran_on.append(threading.current_thread().name)
        return real(execution_ids=execution_ids)

    monkeypatch.setattr(selectors, "execution_snapshots", recorded)

    async def scenario() -> None:
        # when: a socket's read starts the runner, and a second read is queued after the
        # socket's own context has ended
        async with threads.context():
            started = asyncio.ensure_future(batcher.get(str(first.pk)))
            await asyncio.sleep(0)
        queued = asyncio.ensure_future(batcher.get(str(second.pk)))
        await asyncio.gather(started, queued)

    async_to_sync(scenario)()

    # then: both queries ran on a kept request thread (keeping its database connection), not
    # on asgiref's process-wide thread, which opened and closed a connection for each
    assert len(ran_on) == 2
    assert all(name.startswith("autoflow-request-") for name in ran_on)
