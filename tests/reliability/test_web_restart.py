"""Fault: the web process is SIGKILLed while WebSocket clients watch a running execution.

A daphne process (test database, this run's Redis) serves the sockets; a real Celery worker
runs the execution, whose delays make it span the restart. A new daphne starts on the same
port; each client reconnects with `after_seq` = the last seq it saw and must end with every
stored line exactly once and `execution:complete`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from accounts.models import User
from accounts.tokens import tokens_issue
from executions.models import TERMINAL_STATUSES, Execution, ExecutionLog
from executions.services import execution_start
from tests.executions.conftest import (
    EngineProcesses,
    make_graph,
    make_workflow,
    wait_finished,
    wait_for,
)
from tests.servers import (
    daphne_command,
    database_url_from_settings,
    free_port,
    run_server,
    server_env,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 3
SCENARIO_SECONDS = 50.0
# Lines before the first pause, the pause spanning the restart, then more lines and a pause.
GRAPH = make_graph(
    [
        {"id": "hello", "type": "debug", "params": {"message": "hello"}},
        {"id": "pause", "type": "delay", "params": {"seconds": 2}},
        {"id": "after", "type": "debug", "params": {"message": "after the first pause"}},
        {"id": "again", "type": "delay", "params": {"seconds": 1}},
        {"id": "done", "type": "debug", "params": {"message": "done"}},
    ],
    [("t", "hello"), ("hello", "pause"), ("pause", "after"), ("after", "again"), ("again", "done")],
)


@dataclass
class Watcher:
    """What one client saw, across all its connections."""

    seqs: list[int] = field(default_factory=list)
    connections: int = 0
    complete: dict[str, Any] | None = None
    subscribed_after: list[int] = field(default_factory=list)


async def _watch_once(ws_url: str, token: str, execution_id: str, watcher: Watcher) -> None:
    """One connection: subscribe after the last seen seq, read (and ack) until complete."""
    protocols = [Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{token}")]
    async with connect(ws_url, subprotocols=protocols, open_timeout=5) as socket:
        watcher.connections += 1
        after_seq = watcher.seqs[-1] if watcher.seqs else 0
        watcher.subscribed_after.append(after_seq)
        await socket.send(
            json.dumps(
                {
                    "type": "subscribe:execution",
                    "execution_id": execution_id,
                    "after_seq": after_seq,
                }
            )
        )
        while watcher.complete is None:
            message = json.loads(await asyncio.wait_for(socket.recv(), 20))
            if message["type"] == "execution:logs":
                watcher.seqs.extend(line["seq"] for line in message["lines"])
                await socket.send(
                    json.dumps(
                        {"type": "ack", "execution_id": execution_id, "seq": watcher.seqs[-1]}
                    )
                )
            elif message["type"] == "execution:complete":
                watcher.complete = message
            elif message["type"] not in ("connected", "subscribed", "execution:status"):
                raise AssertionError(f"unexpected message {message}")


async def _watch(ws_url: str, token: str, execution_id: str, watcher: Watcher) -> None:
    """Watch until complete, reconnecting (bounded) whenever the server goes away."""
    deadline = asyncio.get_running_loop().time() + SCENARIO_SECONDS
    while watcher.complete is None:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no execution:complete within {SCENARIO_SECONDS} s")
        try:
            await _watch_once(ws_url, token, execution_id, watcher)
        except (ConnectionClosed, InvalidHandshake, OSError, TimeoutError):
            await asyncio.sleep(0.2)  # the server is down or restarting


def _watch_all(ws_url: str, token: str, execution_id: str, watchers: list[Watcher]) -> None:
    async def all_of_them() -> None:
        await asyncio.gather(*(_watch(ws_url, token, execution_id, w) for w in watchers))

    asyncio.run(all_of_them())


def test_web_process_killed_and_restarted_clients_resume_without_gap_or_duplicate(
    running_engine: EngineProcesses, owner: User
) -> None:
    # given: a daphne on a fixed port, and clients watching a run the worker is executing
    env = server_env(DATABASE_URL=database_url_from_settings(connection.settings_dict))
    port = free_port()
    ws_url = f"ws://127.0.0.1:{port}/ws"
    token = tokens_issue(user=owner)["access"]
    workflow = make_workflow(owner, GRAPH)
    watchers = [Watcher() for _ in range(CLIENTS)]
    failures: list[BaseException] = []
    with run_server(daphne_command(port), env, port) as first:
        execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=owner)
        execution_id = str(execution.pk)

        def run_clients() -> None:
            try:
                _watch_all(ws_url, token, execution_id, watchers)
            except BaseException as error:  # reported by the test thread
                failures.append(error)

        clients = threading.Thread(target=run_clients, daemon=True)
        clients.start()
        wait_for(lambda: all(w.seqs for w in watchers), timeout=20)

        # when: the web process dies mid-run (no clean close) and a new one takes the port
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        seen_at_kill = [list(w.seqs) for w in watchers]
        status_at_kill = Execution.objects.get(pk=execution_id).status
        with run_server(daphne_command(port), env, port):
            clients.join(SCENARIO_SECONDS + 5)
            assert not clients.is_alive(), "the clients did not finish in time"

    # then: each client saw every stored line exactly once, in order, and the completion
    assert failures == []
    assert status_at_kill not in TERMINAL_STATUSES  # the kill really happened mid-run
    finished = wait_finished(execution_id)
    assert finished.status == "succeeded"
    stored = list(
        ExecutionLog.objects.filter(execution_id=execution_id)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert stored == list(range(1, len(stored) + 1))
    for watcher, before_kill in zip(watchers, seen_at_kill, strict=True):
        assert watcher.seqs == stored
        assert watcher.connections >= 2  # it reconnected to the new process
        assert watcher.subscribed_after[1] >= before_kill[-1] > 0
        assert watcher.complete is not None
        assert watcher.complete["status"] == "succeeded"
        assert watcher.complete["output"] == finished.output
