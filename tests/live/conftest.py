"""Helpers for the live tests: executions with stored log lines, sockets, and publishing."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from accounts.authentication import api_key_generate, api_key_hash
from accounts.models import ApiKey, User
from accounts.tokens import tokens_issue
from executions.models import Execution, ExecutionLog
from live.consumers import LiveConsumer
from live.publish import execution_group
from tests.executions.conftest import (  # noqa: F401 - the engine's worker fixtures, reused
    engine,
    fast_engine,
    running_engine,
)
from tests.factories import WorkflowFactory
from tests.servers import ServerUrl, daphne_server, database_url_from_settings
from workflows.models import Workflow

GRAPH = {
    "nodes": [
        {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
        {"id": "a", "type": "debug", "params": {"message": "a"}},
        {"id": "b", "type": "debug", "params": {"message": "b"}},
        {"id": "join", "type": "debug", "params": {"message": "join"}},
    ],
    "edges": [
        {"source": "t", "target": "a"},
        {"source": "t", "target": "b"},
        {"source": "a", "target": "join"},
        {"source": "b", "target": "join"},
    ],
}


@pytest.fixture
def daphne_url(transactional_db: Any) -> Iterator[ServerUrl]:
    """A daphne process (channels-redis) serving the test database; yields its base URL."""
    from django.db import connection

    with daphne_server(DATABASE_URL=database_url_from_settings(connection.settings_dict)) as url:
        yield url


def make_workflow(owner: User, *, is_public: bool = False) -> Workflow:
    return WorkflowFactory.create(owner=owner, graph=GRAPH, is_public=is_public)


def make_execution(workflow: Workflow, *, status: str = "running", **fields: Any) -> Execution:
    return Execution.objects.create(
        workflow=workflow,
        workflow_version=workflow.version,
        version=workflow.versions.get(version=workflow.version),
        status=status,
        trigger="manual",
        created_by=workflow.owner,
        started_at=timezone.now(),
        **fields,
    )


def add_lines(execution: Execution, first: int, count: int) -> list[dict[str, Any]]:
    """Store lines `first..first+count-1` and return them in SPEC.md's shape."""
    rows = [
        ExecutionLog(
            execution=execution,
            seq=seq,
            level="info",
            node_id="a",
            message=f"line {seq}",
            data={"n": seq},
        )
        for seq in range(first, first + count)
    ]
    ExecutionLog.objects.bulk_create(rows, batch_size=2000)
    Execution.objects.filter(pk=execution.pk).update(next_log_seq=first + count)
    return [
        {
            "seq": row.seq,
            "ts": row.ts.isoformat(),
            "level": row.level,
            "node_id": row.node_id,
            "message": row.message,
            "data": row.data,
        }
        for row in rows
    ]


async def publish(execution_id: Any, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    await layer.group_send(
        execution_group(execution_id), {"execution_id": str(execution_id), **message}
    )


def access_token(user: User) -> str:
    return tokens_issue(user=user)["access"]


def short_lived_token(user: User, seconds: float) -> str:
    """An access token expiring `seconds` from now, rounded up to JWT's whole seconds.

    Rounded down, as `set_exp` does, a 1-second token issued late in a second expires at once.
    """
    token = AccessToken.for_user(user)
    token["exp"] = math.ceil(time.time() + seconds)
    return str(token)


def make_api_key(user: User, scopes: list[str], **fields: Any) -> str:
    prefix, raw = api_key_generate()
    ApiKey.objects.create(
        user=user, name="test", prefix=prefix, key_hash=api_key_hash(raw), scopes=scopes, **fields
    )
    return raw


def session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def communicator(
    *,
    token: str | None = None,
    query_token: str | None = None,
    origin: str | None = None,
    cookie: str | None = None,
    consumer: type[LiveConsumer] = LiveConsumer,
    subprotocols: list[str] | None = None,
) -> WebsocketCommunicator:
    """A socket on `/ws` through the same middleware the project routes it with."""
    headers = [(b"host", b"testserver")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    protocols = list(subprotocols or [])
    if token is not None:
        protocols = ["autoflow.v1", f"bearer.{token}"]
    path = "/ws" + (f"?token={query_token}" if query_token is not None else "")
    return WebsocketCommunicator(
        AuthMiddlewareStack(consumer.as_asgi()),
        path,
        headers=headers,
        subprotocols=protocols or None,
    )


async def receive(comm: WebsocketCommunicator, timeout: float = 3) -> dict[str, Any]:
    message: dict[str, Any] = await comm.receive_json_from(timeout=timeout)
    return message


async def expect_close(comm: WebsocketCommunicator, code: int, timeout: float = 3) -> None:
    """The next output must be a close with `code` (no data before it)."""
    output = await comm.receive_output(timeout=timeout)
    assert output == {"type": "websocket.close", "code": code}, output


async def connect_ok(comm: WebsocketCommunicator) -> dict[str, Any]:
    connected, _ = await comm.connect(timeout=5)
    assert connected
    message = await receive(comm)
    assert message["type"] == "connected", message
    return message


@contextlib.asynccontextmanager
async def open_socket(**options: Any) -> AsyncIterator[WebsocketCommunicator]:
    """A connected socket (its `connected` message read), disconnected however the block ends."""
    comm = communicator(**options)
    await connect_ok(comm)
    try:
        yield comm
    finally:
        await comm.disconnect()


async def subscribe(comm: WebsocketCommunicator, execution_id: Any, **fields: Any) -> None:
    """Send `subscribe:execution` for `execution_id` (with `after_seq` and the like)."""
    await comm.send_json_to(
        {"type": "subscribe:execution", "execution_id": str(execution_id), **fields}
    )


async def collect_lines(
    comm: WebsocketCommunicator, execution_id: Any, *, until_seq: int, timeout: float = 5
) -> list[int]:
    """Read `execution:logs` until `until_seq` arrives; other message types are not allowed."""
    seqs: list[int] = []
    while not seqs or seqs[-1] < until_seq:
        message = await receive(comm, timeout)
        assert message["type"] == "execution:logs", message
        assert message["execution_id"] == str(execution_id)
        seqs.extend(line["seq"] for line in message["lines"])
    return seqs
