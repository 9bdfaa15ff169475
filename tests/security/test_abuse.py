"""Abuse: hostile inputs are refused or bounded, and process memory stays bounded.

Oversize bodies (413 from Content-Length and while reading a chunked body) are covered in
tests/autoflow/test_http.py and expression bombs one by one in tests/nodes/test_expressions.py;
here they go through the whole stack (daphne, the API, the engine) with memory checks.
AUTOFLOW_FULL_SIZE=1 holds the slow connections longer and opens more of them.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from executions.models import Execution, ExecutionLog
from executions.services import execution_run, execution_start
from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.registry import get_node_class, register
from tests.conftest import client_for
from tests.nodes.helpers import run_node
from tests.security.world import scaled, world_create
from tests.servers import ServerUrl, daphne_server, database_url_from_settings
from tests.triggers.conftest import webhook_workflow
from triggers.call_log import call_log
from triggers.services import webhook_token_ensure
from workflows.models import WebhookCall
from workflows.services import workflow_create

MIB = 1024 * 1024
LOG_LINES = 10_000


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_of(pid: int) -> int:
    """The peak resident set of another process (VmHWM), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


class ChattyParams(NodeParams):
    lines: int = LOG_LINES


if get_node_class("abuse_chatty") is None:

    @register
    class ChattyNode(Node):
        """Write `lines` log lines, as a buggy or hostile node might."""

        type = "abuse_chatty"
        Params = ChattyParams

        def run(self, ctx: NodeContext, params: ChattyParams) -> NodeResult:
            for index in range(params.lines):
                ctx.log("info", f"line {index} " + "x" * 80, {"index": index})
            return NodeResult(output={"lines": params.lines})


def _run_in_process(owner: User, nodes: list[dict[str, Any]]) -> Execution:
    graph = {
        "nodes": [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}, *nodes],
        "edges": [{"source": "t", "target": node["id"]} for node in nodes],
    }
    workflow = workflow_create(owner=owner, name="abuse", graph=graph)
    execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=owner)
    for _ in range(5):  # bounded: each call advances the run as far as it goes
        execution_run(execution_id=str(execution.pk), heartbeat=False)
        execution.refresh_from_db()
        if execution.status in ("succeeded", "failed"):
            break
    return execution


@pytest.mark.django_db
def test_ten_thousand_log_lines_from_one_node_are_all_stored_and_paged(owner: User):
    before = _peak_rss_bytes()
    # when
    execution = _run_in_process(owner, [{"id": "chatty", "type": "abuse_chatty", "params": {}}])
    # then: every line kept in order, served in bounded pages, memory bounded
    assert execution.status == "succeeded", execution.error
    rows = ExecutionLog.objects.filter(execution=execution).order_by("seq")
    seqs = list(rows.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert rows.filter(node_id="chatty", message__startswith="line ").count() == LOG_LINES
    page = client_for(owner).get(f"/api/executions/{execution.pk}/logs?limit=100000")
    assert page.status_code == 400 or (
        len(page.json()["results"]) <= 5000 and page.json()["has_more"] is True
    )
    assert _peak_rss_bytes() - before < 200 * MIB


@pytest.mark.django_db
def test_expression_bomb_in_a_workflow_fails_the_node_quickly_with_bounded_memory(owner: User):
    before = _peak_rss_bytes()
    started = time.monotonic()
    bombs = [
        "{{ 'a' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{% for i in range(10**9) %}{{ i }}{% endfor %}",
    ]
    for bomb in bombs:
        execution = _run_in_process(
            owner, [{"id": "bomb", "type": "transform", "params": {"fields": {"x": bomb}}}]
        )
        assert execution.status == "failed", bomb
        assert execution.error is not None
        assert execution.error["code"] == "expression_error", (bomb, execution.error)
    assert time.monotonic() - started < 30
    assert _peak_rss_bytes() - before < 200 * MIB


def test_a_huge_graph_is_graph_invalid_not_a_crash(owner: User):
    client = client_for(owner)
    many = [{"id": f"n{i}", "type": "debug", "params": {"message": "x"}} for i in range(600)]
    nodes = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}, *many]
    edges = [{"source": "t", "target": f"n{i}"} for i in range(600)]
    too_many = client.post(
        "/api/workflows", {"name": "big", "graph": {"nodes": nodes, "edges": edges}}, format="json"
    )
    heavy = {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
            {"id": "d", "type": "debug", "params": {"message": "y" * (MIB + 1000)}},
        ],
        "edges": [{"source": "t", "target": "d"}],
    }
    too_big = client.post("/api/workflows", {"name": "heavy", "graph": heavy}, format="json")
    for response in (too_many, too_big):
        assert response.status_code == 400, response.content[:500]
        assert response.json()["error"]["code"] == "graph_invalid"


def test_a_webhook_call_with_a_query_or_form_django_refuses_is_a_400_and_recorded(owner: User):
    # Too many query or form fields, or a body said to be multipart that is not: before, a 500
    # (Django's parsers raise, the view did not translate it).
    workflow = webhook_workflow(owner)
    url = f"/api/hooks/{webhook_token_ensure(workflow=workflow)}"  # else armed on commit
    fields = "&".join(f"k{index}=1" for index in range(1_001))
    client = APIClient()
    answers = [
        client.post(f"{url}?{fields}", {"a": 1}, format="json"),
        client.post(url, fields, content_type="application/x-www-form-urlencoded"),
        client.post(url, b"abc", content_type="multipart/form-data"),
        client.post(url, b"abc", content_type="multipart/form-data; boundary=b"),
    ]

    for response in answers[:3]:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"].startswith("Malformed query or form")
    # A multipart body with no part at all is an empty form, as Django reads it.
    assert answers[3].status_code == 202, answers[3].content
    assert Execution.objects.filter(workflow=workflow).count() == 1
    call_log.flush()
    assert sorted(
        WebhookCall.objects.filter(workflow=workflow).values_list("status", flat=True)
    ) == [
        202,
        400,
        400,
        400,
    ]


@pytest.fixture
def abuse_daphne(transactional_db: Any) -> Iterator[ServerUrl]:
    with daphne_server(
        DATABASE_URL=database_url_from_settings(connection.settings_dict),
        RATE_LIMIT_GENERAL="1000000/15m",
        RATE_LIMIT_AUTH="1000000/15m",
    ) as url:
        yield url


@pytest.mark.e2e
def test_deeply_nested_json_is_a_400_through_daphne(abuse_daphne: ServerUrl, owner: User):
    hook = world_create(owner).workflow.webhook_token
    assert hook
    depth = 200_000  # 400 KB: under MAX_REQUEST_BYTES, far past any parser's recursion
    for path in ("/api/auth/login", f"/api/hooks/{hook}"):
        for body in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
            response = requests.post(
                f"{abuse_daphne}{path}",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            assert response.status_code == 400, (path, response.text[:500])
            assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.e2e
def test_slow_bodies_do_not_stop_daphne_serving_others(abuse_daphne: ServerUrl):
    """Slowloris: many clients trickle a body. daphne buffers each (no body read timeout of its
    own), so they hold a socket and a small buffer, not a worker; the README's reverse-proxy
    `client_body_timeout` is what closes them."""
    host, port = abuse_daphne.removeprefix("http://").split(":")
    connections = scaled(20, 200)
    hold_seconds = scaled(3, 60)
    sockets: list[socket.socket] = []
    try:
        for _ in range(connections):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(
                b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            sockets.append(sock)
        deadline = time.monotonic() + hold_seconds
        while time.monotonic() < deadline:
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.sendall(b" ")
            started = time.monotonic()
            health = requests.get(f"{abuse_daphne}/health", timeout=10)
            assert health.status_code in (200, 503)
            assert time.monotonic() - started < 5
            time.sleep(0.5)
        # What daphne does: the slow requests are still waiting for their bodies, unanswered.
        open_count = 0
        for sock in sockets:
            sock.settimeout(0.05)
            try:
                if sock.recv(1) == b"":
                    continue
            except TimeoutError:
                open_count += 1
                continue
            except OSError:
                continue
        assert open_count > 0
    finally:
        for sock in sockets:
            sock.close()
    assert _rss_of(abuse_daphne.process.pid) < 500 * MIB


@pytest.mark.e2e
def test_oversize_bodies_keep_daphne_memory_bounded(abuse_daphne: ServerUrl):
    for _ in range(scaled(5, 50)):
        response = requests.post(
            f"{abuse_daphne}/api/auth/login",
            data=b"{" + b" " * (3 * MIB),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
    assert _rss_of(abuse_daphne.process.pid) < 500 * MIB


@contextlib.contextmanager
def endless_http_server() -> Iterator[int]:
    """A server that answers every request with a body that never ends (until stopped)."""
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(5)
                with contextlib.suppress(OSError):
                    client.recv(65536)
                    client.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                    )
                    chunk = b"1000\r\n" + b"z" * 4096 + b"\r\n"
                    while not stop.is_set():
                        client.sendall(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(10)
        listener.close()


@override_settings(HTTP_NODE_ALLOWED_HOSTS=["127.0.0.1"], NODE_OUTPUT_MAX_BYTES=MIB)
def test_an_http_target_that_streams_forever_is_cut_at_the_output_limit():
    before = _peak_rss_bytes()
    started = time.monotonic()
    with endless_http_server() as port, pytest.raises(NodeError) as caught:
        run_node("http", {"method": "GET", "url": f"http://127.0.0.1:{port}/"})
    assert caught.value.code == "response_too_large", caught.value
    assert time.monotonic() - started < 30
    assert _peak_rss_bytes() - before < 100 * MIB


def test_the_log_page_limit_is_bounded_for_a_hostile_client(owner: User):
    execution = _run_in_process(owner, [{"id": "d", "type": "debug", "params": {"message": "x"}}])
    response = client_for(owner).get(f"/api/executions/{execution.pk}/logs?limit=10000000")
    assert response.status_code in (200, 400)
    if response.status_code == 200:
        assert len(response.json()["results"]) <= 5000


def test_json_dumps_of_a_graph_at_the_limit_is_fast():
    # A graph at the node limit must validate quickly (the API answers within the p95 budget).
    from workflows.graph import validate_graph

    nodes = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}] + [
        {"id": f"n{i}", "type": "debug", "params": {"message": "{{ input.x }}"}} for i in range(499)
    ]
    edges = [{"source": "t" if i == 0 else f"n{i - 1}", "target": f"n{i}"} for i in range(499)]
    started = time.monotonic()
    validate_graph({"nodes": nodes, "edges": edges}, credentials={})
    assert time.monotonic() - started < 2
    assert len(json.dumps(nodes)) < MIB
