"""The per-loop snapshot batcher: concurrent reads share one query and each gets its own answer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from accounts.models import User
from live import selectors
from live.consumers import snapshot_batched
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
