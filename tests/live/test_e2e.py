"""End to end: a real WebSocket client on daphne (channels-redis) while a real Celery worker,
in another process, runs the execution it watches."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from accounts.models import User
from executions.models import ExecutionLog
from executions.services import execution_start
from tests.executions.conftest import EngineProcesses, make_graph, make_workflow, wait_finished
from tests.live.conftest import access_token
from tests.servers import ServerUrl

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A run long enough to be watched live: a burst of log lines, a wait, and more nodes after it.
E2E_GRAPH = make_graph(
    [
        {"id": "hello", "type": "debug", "params": {"message": "hello {{ input.name }}"}},
        {"id": "pause", "type": "delay", "params": {"seconds": 1.5}},
        {"id": "after", "type": "debug", "params": {"message": "after the pause"}},
        {"id": "done", "type": "debug", "params": {"message": "done", "level": "warning"}},
    ],
    [("t", "hello"), ("hello", "pause"), ("pause", "after"), ("after", "done")],
)


async def watch(ws_url: str, token: str, execution_id: str) -> dict[str, Any]:
    """Subscribe, ack as lines arrive, and return everything seen until `complete`."""
    seen: dict[str, Any] = {"seqs": [], "statuses": [], "node_statuses": [], "complete": None}
    protocols = [Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{token}")]
    async with connect(ws_url, subprotocols=protocols) as socket:
        assert socket.subprotocol == "autoflow.v1"
        connected = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert connected["type"] == "connected"
        await socket.send(json.dumps({"type": "subscribe:execution", "execution_id": execution_id}))
        subscribed = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert subscribed["type"] == "subscribed"
        seen["last_seq_at_subscribe"] = subscribed["last_seq"]
        while seen["complete"] is None:
            message = json.loads(await asyncio.wait_for(socket.recv(), 30))
            if message["type"] == "execution:logs":
                seen["seqs"].extend(line["seq"] for line in message["lines"])
                await socket.send(
                    json.dumps(
                        {"type": "ack", "execution_id": execution_id, "seq": seen["seqs"][-1]}
                    )
                )
            elif message["type"] == "execution:status":
                if "node_id" in message:
                    seen["node_statuses"].append((message["node_id"], message["node_status"]))
                else:
                    seen["statuses"].append(message["status"])
            elif message["type"] == "execution:complete":
                seen["complete"] = message
            else:
                raise AssertionError(f"unexpected message {message}")
    return seen


def test_a_worker_run_streams_through_daphne_to_a_websocket_client(
    daphne_url: ServerUrl, running_engine: EngineProcesses, owner: User
) -> None:
    # given: a workflow, a token, and the socket URL of a separate daphne process
    workflow = make_workflow(owner, E2E_GRAPH)
    token = access_token(owner)
    ws_url = daphne_url.replace("http://", "ws://") + "/ws"

    # when: the execution is queued for the worker and watched while it runs
    execution, _ = execution_start(
        workflow=workflow, trigger="manual", input={"name": "Ada"}, user=owner
    )
    seen = asyncio.run(watch(ws_url, token, str(execution.pk)))

    # then: every stored line exactly once, in order, node states live, and the final result
    finished = wait_finished(execution.pk)
    stored = list(
        ExecutionLog.objects.filter(execution=finished)
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    assert finished.status == "succeeded"
    assert seen["seqs"] == stored == list(range(1, len(stored) + 1))
    # The delay means the run was still going when the socket subscribed.
    assert seen["last_seq_at_subscribe"] < len(stored)
    assert ("done", "succeeded") in seen["node_statuses"]
    assert any(node == "pause" for node, _ in seen["node_statuses"])
    assert seen["complete"]["status"] == "succeeded"
    assert seen["complete"]["duration_ms"] == finished.duration_ms
    assert seen["complete"]["output"] == finished.output


def test_a_socket_without_credentials_is_closed_4401_by_daphne(daphne_url: ServerUrl) -> None:
    ws_url = daphne_url.replace("http://", "ws://") + "/ws"

    async def scenario() -> int | None:
        async with connect(ws_url) as socket:
            # the close arrives before any data
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert asyncio.run(scenario()) == 4401
