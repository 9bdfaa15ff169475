"""Secrets: a full run with credentials leaves their plaintext nowhere a person or program reads.

Real processes: daphne serves the API and the WebSocket, a Celery worker runs the workflow. An
HTTP node calls a local server with an `http_bearer` credential (the server echoes the
Authorization header back, as a hostile or careless API would), and an email node sends
through a local aiosmtpd with an `smtp` credential. Afterwards every captured log line (daphne,
worker, this process), every API response, every WebSocket frame and every row of the
executions tables (raw SQL) is searched for both plaintexts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection
from pytest_httpserver import HTTPServer
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol
from werkzeug import Request as WerkzeugRequest
from werkzeug import Response as WerkzeugResponse

from accounts.models import User
from accounts.tokens import tokens_issue
from tests.executions.conftest import (  # noqa: F401 - the engine fixtures, reused
    EngineProcesses,
    engine,
    fast_engine,
    wait_finished,
)
from tests.mail import PASSWORD as SMTP_PASSWORD
from tests.mail import smtp_server
from tests.security.world import BEARER_TOKEN
from tests.servers import ServerUrl, daphne_server, database_url_from_settings

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HIGH_LIMIT = "1000000/15m"


@pytest.fixture
def api_server(transactional_db: Any) -> Iterator[ServerUrl]:
    with daphne_server(
        DATABASE_URL=database_url_from_settings(connection.settings_dict),
        RATE_LIMIT_GENERAL=HIGH_LIMIT,
        RATE_LIMIT_AUTH=HIGH_LIMIT,
    ) as url:
        yield url


@pytest.fixture
def echo_server() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1")
    server.start()

    def echo(request: WerkzeugRequest) -> WerkzeugResponse:
        body = {"authorization": request.headers.get("Authorization"), "ok": True}
        return WerkzeugResponse(json.dumps(body), content_type="application/json")

    server.expect_request("/echo").respond_with_handler(echo)
    try:
        yield server
    finally:
        server.clear()
        server.stop()


async def _watch(ws_url: str, token: str, workflow_id: str, start: Any) -> list[str]:
    """Subscribe to the workflow, start a run, and keep every frame until it completes."""
    frames: list[str] = []
    protocols = [Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{token}")]
    async with connect(ws_url, subprotocols=protocols) as socket:
        frames.append(str(await asyncio.wait_for(socket.recv(), 10)))
        await socket.send(json.dumps({"type": "subscribe:workflow", "workflow_id": workflow_id}))
        frames.append(str(await asyncio.wait_for(socket.recv(), 10)))
        execution_id = await asyncio.to_thread(start)
        await socket.send(json.dumps({"type": "subscribe:execution", "execution_id": execution_id}))
        for _ in range(500):  # bounded: a run of three nodes sends far fewer frames
            frame = str(await asyncio.wait_for(socket.recv(), 60))
            frames.append(frame)
            message = json.loads(frame)
            if message["type"] == "execution:logs" and message["lines"]:
                ack = {"type": "ack", "execution_id": execution_id}
                await socket.send(json.dumps({**ack, "seq": message["lines"][-1]["seq"]}))
            if message["type"] == "execution:complete":
                break
    return frames


def _execution_rows() -> list[str]:
    """Every row of every executions table, as JSON text (raw SQL, nothing filtered)."""
    tables = [t for t in connection.introspection.table_names() if t.startswith("executions_")]
    assert tables
    rows: list[str] = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608
            rows.extend(row[0] for row in cursor.fetchall())
    return rows


def test_credentials_plaintext_appears_in_no_log_response_frame_or_row(
    api_server: ServerUrl,
    engine: EngineProcesses,  # noqa: F811
    fast_engine: None,  # noqa: F811
    owner: User,
    echo_server: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    engine.env["HTTP_NODE_ALLOWED_HOSTS"] = "127.0.0.1"
    worker = engine.worker()
    token = tokens_issue(user=owner)["access"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    responses: list[str] = []

    def call(method: str, path: str, body: Any = None) -> Any:
        response = session.request(method, f"{api_server}{path}", json=body, timeout=30)
        responses.append(f"{response.status_code} {dict(response.headers)} {response.text}")
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    with smtp_server() as (recorder, smtp_port):
        # given: two credentials and a workflow that uses both
        bearer = call(
            "POST",
            "/api/credentials",
            {"name": "api", "type": "http_bearer", "data": {"token": BEARER_TOKEN}},
        )
        smtp = call(
            "POST",
            "/api/credentials",
            {
                "name": "mail",
                "type": "smtp",
                "data": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "username": "robot@autoflow.test",
                    "password": SMTP_PASSWORD,
                    "security": "none",
                },
            },
        )
        graph = {
            "nodes": [
                {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
                {
                    "id": "get",
                    "type": "http",
                    "params": {
                        "method": "GET",
                        "url": echo_server.url_for("/echo"),
                        "credential": bearer["id"],
                    },
                },
                {
                    "id": "mail",
                    "type": "email",
                    "params": {
                        "credential": smtp["id"],
                        "to": ["ada@example.org"],
                        "subject": "Echo",
                        "text": "The API said {{ nodes.get.body }}",
                    },
                },
                {"id": "log", "type": "debug", "params": {"message": "{{ nodes.get }}"}},
            ],
            "edges": [
                {"source": "t", "target": "get"},
                {"source": "get", "target": "mail"},
                {"source": "get", "target": "log"},
            ],
        }
        workflow = call("POST", "/api/workflows", {"name": "with secrets", "graph": graph})

        # when: it runs on the worker while a socket watches
        def start() -> str:
            return str(
                call("POST", f"/api/workflows/{workflow['id']}/execute", {"input": {}})[
                    "execution_id"
                ]
            )

        ws_url = api_server.replace("http://", "ws://") + "/ws"
        frames = asyncio.run(_watch(ws_url, token, workflow["id"], start))
        execution_id = json.loads(frames[-1])["execution_id"]
        finished = wait_finished(execution_id, timeout=60)
        call("GET", f"/api/executions/{execution_id}")
        call("GET", f"/api/executions/{execution_id}/logs")
        call("GET", "/api/executions")
        call("GET", "/api/credentials")
        call("GET", f"/api/credentials/{bearer['id']}")
        call("GET", f"/api/credentials/{smtp['id']}")
        call("GET", f"/api/workflows/{workflow['id']}")

    # then: the run really used both secrets ...
    assert finished.status == "succeeded", finished.error
    assert echo_server.log, "the HTTP node never called the echo server"
    assert echo_server.log[0][0].headers["Authorization"] == f"Bearer {BEARER_TOKEN}"
    assert len(recorder.envelopes) == 1  # the SMTP login with the password succeeded
    # ... and their plaintext is nowhere
    worker.stop()
    places = {
        "daphne log": api_server.log_text(),
        "worker log": worker.log_text(),
        "test process log": "\n".join(record.getMessage() for record in caplog.records),
        "API responses": "\n".join(responses),
        "WebSocket frames": "\n".join(frames),
        "executions rows": "\n".join(_execution_rows()),
    }
    assert places["worker log"]
    assert places["daphne log"]
    for secret in (BEARER_TOKEN, SMTP_PASSWORD):
        leaks = [place for place, text in places.items() if secret in text]
        assert not leaks, f"{secret!r} found in {leaks}"
