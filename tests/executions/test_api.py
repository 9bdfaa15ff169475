"""The executions API: paths, status codes, shapes, permissions and scopes as SPEC.md says."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.models import ApiKey
from autoflow.exceptions import ValidationFailed
from executions import services
from executions.models import Execution
from tests.conftest import client_for
from tests.executions.conftest import make_graph, make_workflow
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

GRAPH = make_graph(
    [{"id": "a", "type": "test_emit", "params": {"value": "{{ input.x }}"}}], [("t", "a")]
)


def finished(execution: Execution) -> Execution:
    services.execution_run(execution_id=str(execution.pk), heartbeat=False)
    execution.refresh_from_db()
    return execution


def api_key_client(user, scopes: list[str]) -> APIClient:
    from accounts.services import api_key_create

    _, raw = api_key_create(user=user, name="k", scopes=scopes, expires_at=None)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


def test_execute_answers_202_queued(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    response = owner_client.post(
        f"/api/workflows/{workflow.pk}/execute", {"input": {"x": 1}}, format="json"
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"execution_id", "status"}
    assert body["status"] == "queued"
    execution = Execution.objects.get(pk=body["execution_id"])
    assert execution.input == {"x": 1}
    assert execution.created_by == owner


def test_execute_without_body_uses_empty_input(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    response = owner_client.post(f"/api/workflows/{workflow.pk}/execute")
    assert response.status_code == 202, response.content
    assert Execution.objects.get().input == {}


def test_execute_rejects_non_object_input(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    response = owner_client.post(
        f"/api/workflows/{workflow.pk}/execute", {"input": [1]}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [{"input": {"x": "a\x00b"}}, {"input": {"a\x00": 1}}, {"input": {"x": ["\x00"]}}],
)
def test_execute_refuses_a_nul_character_with_400_and_stores_nothing(owner_client, owner, body):
    # PostgreSQL stores no NUL: before, this was a 500 from the execution's insert.
    workflow = make_workflow(owner, GRAPH)
    response = owner_client.post(f"/api/workflows/{workflow.pk}/execute", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert "NUL" in error["message"]
    assert not Execution.objects.exists()


def test_execute_refuses_a_lone_surrogate_with_400_and_takes_a_pair(owner_client, owner):
    # JSON's escapes can spell half of a UTF-16 pair, which is no character: before, a 500.
    workflow = make_workflow(owner, GRAPH)
    url = f"/api/workflows/{workflow.pk}/execute"
    lone = owner_client.post(url, '{"input": {"x": "a\\udc00"}}', content_type="application/json")
    assert lone.status_code == 400, lone.content
    assert "lone surrogate" in lone.json()["error"]["message"]
    pair = owner_client.post(
        url, '{"input": {"x": "\\ud83d\\ude00"}}', content_type="application/json"
    )
    assert pair.status_code == 202, pair.content
    assert Execution.objects.get().input == {"x": "\U0001f600"}


def test_execute_takes_the_text_backslash_u0000_which_is_no_nul(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    response = owner_client.post(
        f"/api/workflows/{workflow.pk}/execute", {"input": {"x": "\\u0000"}}, format="json"
    )
    assert response.status_code == 202, response.content
    assert Execution.objects.get().input == {"x": "\\u0000"}


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"x": "\x00"}, "a NUL character (\\u0000)"),
        ({"x": [float("nan")]}, "the number nan, which JSON has not"),
        ({"x": {"y": float("-inf")}}, "the number -inf, which JSON has not"),
        ({"x": "\ud800"}, "a lone surrogate (half of a UTF-16 pair)"),
    ],
)
def test_starting_an_execution_refuses_an_input_the_database_cannot_store(owner, payload, said):
    # Every way in (webhooks, schedules, the CLI) starts here, not only the API.
    workflow = make_workflow(owner, GRAPH)
    with pytest.raises(ValidationFailed) as raised:
        services.execution_start(workflow=workflow, trigger="manual", input=payload, user=owner)
    assert raised.value.details == {"input": [f"It holds {said}."]}
    assert not Execution.objects.exists()


def test_execute_private_of_other_is_404_public_is_403_and_never_runs(
    owner, reader_client, outsider_client
):
    private = make_workflow(owner, GRAPH)
    public = make_workflow(owner, GRAPH, is_public=True)
    assert (
        outsider_client.post(f"/api/workflows/{private.pk}/execute").json()["error"]["code"]
        == "not_found"
    )
    response = reader_client.post(f"/api/workflows/{public.pk}/execute")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert Execution.objects.count() == 0


def _workflow_reads(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and "workflows_workflow" in q["sql"]
    ]


def test_an_owners_next_execute_reads_no_workflow_and_runs_its_current_version(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    url = f"/api/workflows/{workflow.pk}/execute"
    assert owner_client.post(url, {"input": {"x": 1}}, format="json").status_code == 202
    # a new version since that execute
    graph = make_graph([{"id": "b", "type": "test_emit"}], [("t", "b")])
    WorkflowVersion.objects.create(
        workflow=workflow, version=2, name=workflow.name, graph=graph, created_by=owner
    )
    Workflow.objects.filter(pk=workflow.pk).update(version=2, graph=graph)

    second = owner_client.post(url, {"input": {"x": 2}}, format="json")
    with CaptureQueriesContext(connection) as queries:
        third = owner_client.post(url, {"input": {"x": 3}}, format="json")

    assert [second.status_code, third.status_code] == [202, 202]
    for response in (second, third):
        execution = Execution.objects.get(pk=response.json()["execution_id"])
        assert execution.workflow_version == 2
        assert list(execution.node_runs.values_list("node_id", flat=True)) == ["t", "b"]
    if connection.vendor == "postgresql":  # elsewhere the guard is a query of its own
        assert _workflow_reads(queries) == []


def test_an_execute_once_the_workflow_is_gone_or_not_the_callers_is_404(
    owner_client, owner, outsider
):
    given_away = make_workflow(owner, GRAPH)
    deleted = make_workflow(owner, GRAPH)
    for workflow in (given_away, deleted):
        url = f"/api/workflows/{workflow.pk}/execute"
        assert owner_client.post(url, {"input": {}}, format="json").status_code == 202

    Workflow.objects.filter(pk=given_away.pk).update(owner=outsider)
    deleted.delete()
    # Bodies it would refuse are answered 404 first too.
    bodies = ['{"input": {}}', '{"input": 5}', '{"input": ']
    answers = [
        owner_client.post(
            f"/api/workflows/{workflow.pk}/execute", body, content_type="application/json"
        )
        for workflow in (given_away, deleted)
        for body in bodies
    ]

    assert [a.status_code for a in answers] == [404] * 6
    assert Execution.objects.filter(workflow=given_away).count() == 1


def test_idempotency_key_replays_and_conflicts(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    url = f"/api/workflows/{workflow.pk}/execute"
    first = owner_client.post(url, {"input": {"x": 1}}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    replay = owner_client.post(url, {"input": {"x": 1}}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == replay.status_code == 202
    assert first.json() == replay.json()
    assert Execution.objects.count() == 1
    conflict = owner_client.post(
        url, {"input": {"x": 2}}, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"


def test_detail_reads_the_execution_and_its_node_runs_not_the_workflow(owner_client, owner):
    execution = finished(
        services.execution_start(
            workflow=make_workflow(owner, GRAPH), trigger="manual", input={"x": 5}, user=owner
        )[0]
    )

    with CaptureQueriesContext(connection) as captured:
        answer = owner_client.get(f"/api/executions/{execution.pk}")

    assert answer.status_code == 200
    assert len(answer.json()["node_runs"]) == 2
    # The caller, then the execution with its workflow's owner and its node runs in one
    # statement. The workflow row, whose graph may be a mebibyte, is not read.
    assert len(captured) == 2
    assert not any('"workflows_workflow"."graph"' in query["sql"] for query in captured)


def test_detail_shape_with_node_runs(owner_client, owner):
    execution = finished(
        services.execution_start(
            workflow=make_workflow(owner, GRAPH), trigger="manual", input={"x": 5}, user=owner
        )[0]
    )
    body = owner_client.get(f"/api/executions/{execution.pk}").json()
    assert set(body) == {
        "id",
        "workflow",
        "workflow_version",
        "status",
        "trigger",
        "input",
        "output",
        "error",
        "retry_of",
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "node_runs",
    }
    assert body["status"] == "succeeded"
    assert body["output"] == {"a": 5}
    assert [run["node_id"] for run in body["node_runs"]] == ["t", "a"]
    assert set(body["node_runs"][0]) == {
        "node_id",
        "type",
        "status",
        "attempts",
        "started_at",
        "finished_at",
        "output",
        "error",
        "cached",
    }


def test_list_visibility_filters_and_pagination(owner, outsider, admin_user):
    mine = make_workflow(owner, GRAPH)
    theirs = make_workflow(outsider, GRAPH, is_public=True)
    for _ in range(3):
        services.execution_start(workflow=mine, trigger="manual", input={}, user=owner)
    done = finished(
        services.execution_start(workflow=mine, trigger="manual", input={"x": 1}, user=owner)[0]
    )
    services.execution_start(workflow=theirs, trigger="manual", input={}, user=outsider)

    body = client_for(owner).get("/api/executions").json()
    assert body["count"] == 4
    assert set(body) == {"count", "next", "previous", "results"}
    assert client_for(admin_user).get("/api/executions").json()["count"] == 5
    by_status = client_for(owner).get("/api/executions", {"status": "succeeded"}).json()
    assert [row["id"] for row in by_status["results"]] == [str(done.pk)]
    by_workflow = client_for(admin_user).get("/api/executions", {"workflow": str(theirs.pk)}).json()
    assert by_workflow["count"] == 1
    page = (
        client_for(owner)
        .get("/api/executions", {"page_size": "2", "ordering": "created_at"})
        .json()
    )
    assert len(page["results"]) == 2
    assert page["next"]
    after = (
        client_for(owner).get("/api/executions", {"created_after": "2999-01-01T00:00:00Z"}).json()
    )
    assert after["count"] == 0
    bad = client_for(owner).get("/api/executions", {"status": "nope"})
    assert bad.status_code == 400


def test_other_users_execution_is_404(owner, outsider_client):
    execution, _ = services.execution_start(
        workflow=make_workflow(owner, GRAPH), trigger="manual", input={}, user=owner
    )
    for method, path in [
        ("get", ""),
        ("get", "/logs"),
        ("delete", ""),
        ("post", "/retry"),
        ("post", "/cancel"),
    ]:
        response = getattr(outsider_client, method)(f"/api/executions/{execution.pk}{path}")
        assert response.status_code == 404, (method, path)


def test_logs_after_seq_and_limit(owner_client, owner):
    execution = finished(
        services.execution_start(
            workflow=make_workflow(owner, GRAPH), trigger="manual", input={"x": 1}, user=owner
        )[0]
    )
    everything = owner_client.get(f"/api/executions/{execution.pk}/logs").json()
    lines = everything["results"]
    assert everything["has_more"] is False
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert set(lines[0]) == {"seq", "ts", "level", "node_id", "message", "data"}
    page = owner_client.get(
        f"/api/executions/{execution.pk}/logs", {"after_seq": 1, "limit": 2}
    ).json()
    assert [line["seq"] for line in page["results"]] == [2, 3]
    assert page["has_more"] is True
    too_many = owner_client.get(f"/api/executions/{execution.pk}/logs", {"limit": 5001})
    assert too_many.status_code == 400


def test_delete_cancel_retry_status_codes(owner_client, owner):
    workflow = make_workflow(owner, GRAPH)
    queued, _ = services.execution_start(workflow=workflow, trigger="manual", input={}, user=owner)
    assert owner_client.delete(f"/api/executions/{queued.pk}").status_code == 409
    assert owner_client.post(f"/api/executions/{queued.pk}/retry").status_code == 409
    cancel = owner_client.post(f"/api/executions/{queued.pk}/cancel")
    assert cancel.status_code == 202
    assert cancel.json() == {"execution_id": str(queued.pk), "status": "cancelled"}
    again = owner_client.post(f"/api/executions/{queued.pk}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_state"
    retry = owner_client.post(
        f"/api/executions/{queued.pk}/retry",
        {"from_failed_node": True, "version": "latest"},
        format="json",
    )
    assert retry.status_code == 202
    retried = Execution.objects.get(pk=retry.json()["execution_id"])
    assert retried.retry_of_id == queued.pk
    assert retried.trigger == "retry"
    bad = owner_client.post(f"/api/executions/{queued.pk}/retry", {"version": "old"}, format="json")
    assert bad.status_code == 400
    assert owner_client.delete(f"/api/executions/{queued.pk}").status_code == 204


def test_stats_endpoint(owner_client, owner, reader_client):
    workflow = make_workflow(owner, GRAPH, is_public=True)
    empty = owner_client.get(f"/api/workflows/{workflow.pk}/stats").json()
    assert empty == {
        "total": 0,
        "by_status": dict.fromkeys(
            ("queued", "running", "waiting", "succeeded", "failed", "cancelled"),
            0,
        ),
        "success_rate": None,
        "avg_duration_ms": None,
        "p95_duration_ms": None,
        "last_execution": None,
    }
    execution = finished(
        services.execution_start(workflow=workflow, trigger="manual", input={"x": 1}, user=owner)[0]
    )
    body = reader_client.get(f"/api/workflows/{workflow.pk}/stats").json()
    assert body["total"] == 1
    assert body["success_rate"] == 1.0
    assert body["last_execution"]["id"] == str(execution.pk)


def test_api_key_scopes(owner):
    workflow = make_workflow(owner, GRAPH)
    reader = api_key_client(owner, ["executions:read", "workflows:read"])
    assert reader.get("/api/executions").status_code == 200
    assert reader.get(f"/api/workflows/{workflow.pk}/stats").status_code == 200
    denied = reader.post(f"/api/workflows/{workflow.pk}/execute")
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "scope_missing"
    writer = api_key_client(owner, ["executions:write"])
    assert writer.post(f"/api/workflows/{workflow.pk}/execute").status_code == 202
    assert writer.get("/api/executions").json()["error"]["code"] == "scope_missing"
    assert ApiKey.objects.count() == 2
