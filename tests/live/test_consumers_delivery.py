"""Replay-then-live without gap or duplicate under concurrent writes, and flow control."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection

from accounts.models import User
from executions.models import Execution
from live.consumers import LiveConsumer
from tests.live.conftest import (
    access_token,
    add_lines,
    communicator,
    connect_ok,
    make_execution,
    make_workflow,
    open_socket,
    publish,
    receive,
    subscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)


class QuickStallConsumer(LiveConsumer):
    stall_grace_seconds = 0.5


def _write_in_own_connection(execution: Execution, first: int, count: int) -> list[dict[str, Any]]:
    """Insert and commit from a worker thread, as another process would."""
    try:
        return add_lines(execution, first, count)
    finally:
        connection.close()


def _finish_in_own_connection(execution_id: Any) -> None:
    try:
        Execution.objects.filter(pk=execution_id).update(
            status="succeeded", duration_ms=99, output={"join": "done"}
        )
    finally:
        connection.close()


def test_replay_and_live_have_no_gap_and_no_duplicate_under_concurrent_inserts(
    owner: User,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite locks the table)")
    # given: 3,000 stored lines (a replay of several database pages) and a run still logging
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 3000)
    token = access_token(owner)
    batches, batch_size = 40, 50
    last = 3000 + batches * batch_size

    async def writer() -> None:
        seq = 3001
        for index in range(batches):
            lines = await sync_to_async(_write_in_own_connection, thread_sensitive=False)(
                execution, seq, batch_size
            )
            seq += batch_size
            # Every seventh batch is "dropped by the channel layer", and the last one too.
            if index % 7 != 3 and index != batches - 1:
                await publish(execution.pk, {"type": "execution.logs", "lines": lines})
            # Some batches are published twice (a retried publish).
            if index % 11 == 5:
                await publish(execution.pk, {"type": "execution.logs", "lines": lines})
            await asyncio.sleep(0.005)
        await sync_to_async(_finish_in_own_connection, thread_sensitive=False)(execution.pk)
        await publish(
            execution.pk,
            {
                "type": "execution.complete",
                "status": "succeeded",
                "duration_ms": 99,
                "output": {"join": "done"},
            },
        )

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            writing = asyncio.create_task(writer())
            await asyncio.sleep(0.02)
            # when: subscribing while lines keep arriving
            await subscribe(comm, execution.pk)
            subscribed = await receive(comm)
            assert subscribed["type"] == "subscribed"
            assert 3000 <= subscribed["last_seq"] <= last
            seqs: list[int] = []
            complete: dict[str, Any] | None = None
            while complete is None:
                message = await receive(comm, timeout=10)
                if message["type"] == "execution:logs":
                    seqs.extend(line["seq"] for line in message["lines"])
                    await comm.send_json_to(
                        {"type": "ack", "execution_id": str(execution.pk), "seq": seqs[-1]}
                    )
                else:
                    assert message["type"] == "execution:complete", message
                    complete = message
            await writing
            # then: every line exactly once, in order, and `complete` after the last one
            assert seqs == list(range(1, last + 1))
            assert complete["status"] == "succeeded"
            assert complete["output"] == {"join": "done"}
            assert await comm.receive_nothing(timeout=0.3)

    async_to_sync(scenario)()


def test_a_client_that_never_acks_gets_at_most_the_window(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 12_000)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            assert (await receive(comm))["last_seq"] == 12_000
            seqs: list[int] = []
            while len(seqs) < 10_000:
                message = await receive(comm)
                seqs.extend(line["seq"] for line in message["lines"])
            # then: exactly the window, and nothing beyond it
            assert seqs == list(range(1, 10_001))
            assert await comm.receive_nothing(timeout=0.5)
            # an ack for lines never sent does not widen the window
            await comm.send_json_to(
                {"type": "ack", "execution_id": str(execution.pk), "seq": 10_500}
            )
            more: list[int] = []
            while len(more) < 2000:
                message = await receive(comm)
                more.extend(line["seq"] for line in message["lines"])
            assert more == list(range(10_001, 12_001))

    async_to_sync(scenario)()


def test_a_client_that_acks_once_and_stops_reading_is_closed_4429(owner: User) -> None:
    # given: more stored lines than one window past the client's only ack
    execution = make_execution(make_workflow(owner))
    add_lines(execution, 1, 15_000)
    token = access_token(owner)

    async def scenario() -> None:
        comm = communicator(token=token, consumer=QuickStallConsumer)
        await connect_ok(comm)
        await subscribe(comm, execution.pk)
        await receive(comm)
        first = await receive(comm)
        acked = first["lines"][-1]["seq"]
        await comm.send_json_to({"type": "ack", "execution_id": str(execution.pk), "seq": acked})
        # when: the client stops reading while the run keeps logging
        for start in (15_001, 15_101):
            lines = await sync_to_async(add_lines)(execution, start, 100)
            await publish(execution.pk, {"type": "execution.logs", "lines": lines})
        await asyncio.sleep(1.5)
        # then: what was queued stays within one window of the ack, then 4429
        highest = acked
        while True:
            output = await comm.receive_output(timeout=3)
            if output["type"] == "websocket.close":
                assert output["code"] == 4429
                break
            for line in json.loads(output["text"])["lines"]:
                highest = max(highest, line["seq"])
        assert highest == acked + 10_000

    async_to_sync(scenario)()


def test_an_acking_client_receives_everything_within_the_window(owner: User) -> None:
    execution = make_execution(make_workflow(owner), status="succeeded", duration_ms=5, output={})
    add_lines(execution, 1, 25_000)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token, consumer=QuickStallConsumer) as comm:
            await subscribe(comm, execution.pk)
            await receive(comm)
            acked = 0
            received = 0
            while True:
                message = await receive(comm)
                if message["type"] == "execution:complete":
                    break
                seqs = [line["seq"] for line in message["lines"]]
                assert seqs[0] == received + 1
                assert seqs[-1] <= acked + 10_000
                received = seqs[-1]
                # acks lag a little behind, like a real client's
                if received - acked >= 3000:
                    acked = received
                    await comm.send_json_to(
                        {"type": "ack", "execution_id": str(execution.pk), "seq": acked}
                    )
            assert received == 25_000

    async_to_sync(scenario)()


def test_big_lines_are_split_into_bounded_frames(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await subscribe(comm, execution.pk)
            await receive(comm)
            # one published batch of 40 lines of ~30 KB each (1.2 MB in all)
            lines = await sync_to_async(add_lines)(execution, 1, 40)
            for line in lines:
                line["data"] = {"blob": "x" * 30_000}
            await publish(execution.pk, {"type": "execution.logs", "lines": lines})
            seqs: list[int] = []
            while len(seqs) < 40:
                output = await comm.receive_output(timeout=3)
                assert len(output["text"]) < 300_000
                seqs.extend(line["seq"] for line in json.loads(output["text"])["lines"])
            assert seqs == list(range(1, 41))

    async_to_sync(scenario)()
