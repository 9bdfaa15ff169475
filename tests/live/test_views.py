"""The live execution page and its state endpoint (Django session, like the admin)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import User
from executions.models import NodeRun
from tests.live.conftest import add_lines, make_execution, make_workflow

pytestmark = pytest.mark.django_db


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_is_redirected_to_the_admin_login(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    path = f"/executions/{execution.pk}/live"

    response = Client().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"


def test_owner_sees_the_page_with_only_external_scripts_under_the_csp(owner: User) -> None:
    execution = make_execution(make_workflow(owner))

    response = _client_for(owner).get(f"/executions/{execution.pk}/live")

    assert response.status_code == 200
    body = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert '<script src="/static/live/live.js" defer></script>' in body
    # The only other script tag is the JSON state, which a browser never executes.
    scripts = re.findall(r"<script([^>]*)>", body)
    assert sorted(scripts) == sorted(
        [' src="/static/live/live.js" defer', ' id="live-state" type="application/json"']
    )
    assert "cdn" not in body.lower()
    assert str(execution.pk) in body


def test_page_embeds_the_laid_out_graph_and_node_states(owner: User) -> None:
    execution = make_execution(make_workflow(owner))
    now = timezone.now()
    NodeRun.objects.create(
        execution=execution,
        node_id="a",
        type="debug",
        status="succeeded",
        attempts=2,
        started_at=now - timedelta(milliseconds=1500),
        finished_at=now,
    )
    add_lines(execution, 1, 4)

    response = _client_for(owner).get(f"/executions/{execution.pk}/live")

    match = re.search(
        r'<script id="live-state" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.S,
    )
    assert match is not None
    state = json.loads(match.group(1))
    assert state["execution"]["id"] == str(execution.pk)
    assert state["execution"]["status"] == "running"
    assert state["last_seq"] == 4
    nodes = {node["node_id"]: node for node in state["nodes"]}
    assert nodes["a"]["status"] == "succeeded"
    assert nodes["a"]["attempts"] == 2
    assert nodes["a"]["duration_ms"] == 1500
    assert nodes["b"]["status"] == "pending"
    layers = {node["id"]: node["layer"] for node in state["layout"]["nodes"]}
    assert layers == {"t": 0, "a": 1, "b": 1, "join": 2}


def test_outsider_gets_404_and_admin_gets_the_page(
    owner: User, outsider: User, admin_user: User
) -> None:
    execution = make_execution(make_workflow(owner, is_public=True))
    path = f"/executions/{execution.pk}/live"

    assert _client_for(outsider).get(path).status_code == 404
    assert _client_for(outsider).get(f"{path}/state").status_code == 404
    assert _client_for(admin_user).get(path).status_code == 200


def test_state_endpoint_answers_json(owner: User) -> None:
    execution = make_execution(make_workflow(owner), status="succeeded", duration_ms=12)

    response = _client_for(owner).get(f"/executions/{execution.pk}/live/state")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["execution"]["status"] == "succeeded"
    assert body["execution"]["duration_ms"] == 12
    assert [node["node_id"] for node in body["nodes"]] == ["t", "a", "b", "join"]


def test_unknown_execution_is_404(owner: User) -> None:
    response = _client_for(owner).get("/executions/00000000-0000-0000-0000-000000000000/live")
    assert response.status_code == 404


def test_static_assets_are_served_by_the_project(owner: User) -> None:
    client = _client_for(owner)
    for name in ("live.js", "live.css"):
        response = client.get(f"/static/live/{name}")
        assert response.status_code == 200
        content = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        assert len(content) > 1000
