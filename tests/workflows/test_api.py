"""Workflows API: CRUD, filters, permissions, versions, duplicate and bad input."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from tests.conftest import client_for
from tests.factories import UserFactory, WorkflowFactory, simple_graph
from workflows.credentials import credential_create
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db

WORKFLOW_FIELDS = {
    "id",
    "name",
    "description",
    "graph",
    "tags",
    "is_public",
    "active",
    "version",
    "owner",
    "created_at",
    "updated_at",
}


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def _cyclic_graph() -> dict[str, Any]:
    graph = simple_graph()
    graph["nodes"].append({"id": "b", "type": "debug", "params": {"message": "b"}})
    graph["edges"] += [{"source": "log", "target": "b"}, {"source": "b", "target": "log"}]
    return graph


def _http_graph(credential: Any) -> dict[str, Any]:
    graph = simple_graph()
    graph["nodes"].append(
        {
            "id": "call",
            "type": "http",
            "params": {"method": "GET", "url": "https://example.org", "credential": credential},
        }
    )
    graph["edges"].append({"source": "t", "target": "call"})
    return graph


# --- Create and retrieve ---------------------------------------------------------------------


def test_create_then_retrieve_with_etag(owner, owner_client):
    # when
    response = owner_client.post(
        "/api/workflows",
        {"name": "Daily", "description": "d", "graph": simple_graph(), "tags": ["a", "b", "a"]},
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == WORKFLOW_FIELDS
    assert body["version"] == 1
    assert body["tags"] == ["a", "b"]
    assert body["is_public"] is False
    assert body["owner"] == {"id": str(owner.id), "name": owner.name}
    assert response["ETag"] == '"1"'
    detail = owner_client.get(f"/api/workflows/{body['id']}")
    assert detail.status_code == 200
    assert detail["ETag"] == '"1"'
    assert detail.json() == body
    assert WorkflowVersion.objects.filter(workflow_id=body["id"], version=1).count() == 1


def test_list_is_paginated_and_scoped(owner, outsider):
    # given
    for _ in range(3):
        WorkflowFactory.create(owner=owner)
    WorkflowFactory.create(owner=outsider)
    WorkflowFactory.create(owner=outsider, is_public=True, name="shared")
    # when
    body = client_for(owner).get("/api/workflows?page_size=2").json()
    # then
    assert body["count"] == 4
    assert len(body["results"]) == 2
    assert body["next"] is not None
    assert body["previous"] is None
    second = client_for(owner).get("/api/workflows?page_size=2&page=2").json()
    names = {item["name"] for item in body["results"] + second["results"]}
    assert "shared" in names
    assert len(names) == 4


def test_admin_lists_everything(owner, outsider, admin_client_api):
    WorkflowFactory.create(owner=owner)
    WorkflowFactory.create(owner=outsider)
    assert admin_client_api.get("/api/workflows").json()["count"] == 2


def test_list_filters(owner, outsider):
    # given
    old = timezone.now() - dt.timedelta(days=10)
    WorkflowFactory.create(owner=owner, name="Alpha report", tags=["x", "y"], created_at=old)
    WorkflowFactory.create(owner=owner, name="Beta", description="sends the REPORT", tags=["x"])
    WorkflowFactory.create(owner=owner, name="Gamma", tags=["y", "z"], is_public=True)
    WorkflowFactory.create(owner=outsider, name="Delta", tags=["x", "y"], is_public=True)
    client = client_for(owner)

    def names(query: str) -> set[str]:
        response = client.get(f"/api/workflows?{query}")
        assert response.status_code == 200, response.content
        return {item["name"] for item in response.json()["results"]}

    # then
    assert names("search=report") == {"Alpha report", "Beta"}
    assert names("tag=x") == {"Alpha report", "Beta", "Delta"}
    assert names("tag=x&tag=y") == {"Alpha report", "Delta"}
    assert names("tag=x&tag=y&owner=me") == {"Alpha report"}
    assert names("tag=nope") == set()
    assert names("is_public=true") == {"Gamma", "Delta"}
    assert names("is_public=false") == {"Alpha report", "Beta"}
    assert names(f"owner={outsider.id}") == {"Delta"}
    since = (timezone.now() - dt.timedelta(days=1)).isoformat()
    assert names(f"created_before={since.replace('+', '%2B')}") == {"Alpha report"}
    assert "Alpha report" not in names(f"created_after={since.replace('+', '%2B')}")


def test_list_ordering(owner):
    # given
    base = timezone.now()
    for index, name in enumerate(["b", "c", "a"]):
        WorkflowFactory.create(
            owner=owner,
            name=name,
            created_at=base + dt.timedelta(seconds=index),
            updated_at=base - dt.timedelta(seconds=index),
        )
    client = client_for(owner)

    def order(query: str) -> list[str]:
        return [item["name"] for item in client.get(f"/api/workflows?{query}").json()["results"]]

    # then
    assert order("") == ["b", "c", "a"]  # default -updated_at
    assert order("ordering=name") == ["a", "b", "c"]
    assert order("ordering=-name") == ["c", "b", "a"]
    assert order("ordering=created_at") == ["b", "c", "a"]
    assert order("ordering=-created_at") == ["a", "c", "b"]
    assert order("ordering=updated_at") == ["a", "c", "b"]


@pytest.mark.parametrize(
    "query",
    ["ordering=owner", "is_public=maybe", "created_after=yesterday", "owner=someone", "page=9"],
)
def test_list_bad_query_is_4xx(owner_client, query):
    response = owner_client.get(f"/api/workflows?{query}")
    assert response.status_code in (400, 404)
    assert response.json()["error"]["code"] in ("validation_error", "not_found")


# --- Update and locking ----------------------------------------------------------------------


def test_put_and_patch_bump_version_and_store_version_rows(owner):
    # given
    workflow = WorkflowFactory.create(owner=owner, name="one")
    client = client_for(owner)
    url = f"/api/workflows/{workflow.id}"
    # when: PUT with the body version
    put = client.put(
        url,
        {"name": "two", "graph": simple_graph("v2"), "tags": ["t"], "version": 1},
        format="json",
    )
    # then
    assert put.status_code == 200, put.content
    assert put.json()["version"] == 2
    assert put["ETag"] == '"2"'
    # when: PATCH with If-Match
    patch = client.patch(url, {"is_public": True}, format="json", HTTP_IF_MATCH='"2"')
    assert patch.status_code == 200, patch.content
    assert patch.json()["version"] == 3
    assert patch.json()["name"] == "two"
    assert patch.json()["is_public"] is True
    versions = list(
        WorkflowVersion.objects.filter(workflow=workflow)
        .order_by("version")
        .values_list("version", "name")
    )
    assert versions == [(1, "one"), (2, "two"), (3, "two")]


def test_update_without_version_is_version_required(owner):
    workflow = WorkflowFactory.create(owner=owner)
    response = client_for(owner).patch(
        f"/api/workflows/{workflow.id}", {"name": "x"}, format="json"
    )
    assert _error(response) == (400, "version_required")
    workflow.refresh_from_db()
    assert workflow.version == 1
    assert workflow.name != "x"


def test_stale_version_is_conflict_with_current_version(owner):
    # given
    workflow = WorkflowFactory.create(owner=owner)
    client = client_for(owner)
    url = f"/api/workflows/{workflow.id}"
    assert client.patch(url, {"name": "a", "version": 1}, format="json").status_code == 200
    # when
    response = client.patch(url, {"name": "b"}, format="json", HTTP_IF_MATCH='"1"')
    # then
    assert _error(response) == (409, "version_conflict")
    assert response.json()["error"]["details"]["current_version"] == 2
    workflow.refresh_from_db()
    assert workflow.name == "a"
    assert workflow.version == 2


def test_if_match_and_body_must_agree(owner):
    workflow = WorkflowFactory.create(owner=owner)
    response = client_for(owner).patch(
        f"/api/workflows/{workflow.id}",
        {"name": "b", "version": 1},
        format="json",
        HTTP_IF_MATCH='"7"',
    )
    assert _error(response) == (400, "validation_error")


def test_invalid_graph_on_update_stores_nothing(owner):
    workflow = WorkflowFactory.create(owner=owner)
    response = client_for(owner).patch(
        f"/api/workflows/{workflow.id}", {"graph": _cyclic_graph(), "version": 1}, format="json"
    )
    assert _error(response) == (400, "graph_invalid")
    workflow.refresh_from_db()
    assert workflow.version == 1
    assert workflow.graph == simple_graph()
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 1


def test_delete(owner):
    workflow = WorkflowFactory.create(owner=owner)
    response = client_for(owner).delete(f"/api/workflows/{workflow.id}")
    assert response.status_code == 204
    assert not Workflow.objects.filter(pk=workflow.id).exists()
    assert not WorkflowVersion.objects.filter(workflow_id=workflow.id).exists()


# --- Permissions -----------------------------------------------------------------------------


def test_reader_of_public_workflow_reads_but_may_not_write(owner, reader):
    # given
    workflow = WorkflowFactory.create(owner=owner, is_public=True)
    client = client_for(reader)
    url = f"/api/workflows/{workflow.id}"
    # then
    assert client.get(url).status_code == 200
    assert client.get(f"{url}/versions").status_code == 200
    assert client.get(f"{url}/versions/1").status_code == 200
    assert _error(client.patch(url, {"name": "x", "version": 1}, format="json")) == (
        403,
        "permission_denied",
    )
    put_body = {"name": "x", "graph": simple_graph(), "version": 1}
    assert _error(client.put(url, put_body, format="json"))[0] == 403
    assert _error(client.delete(url))[0] == 403
    assert _error(client.post(f"{url}/versions/1/restore", {"version": 1}, format="json"))[0] == 403
    workflow.refresh_from_db()
    assert workflow.version == 1


def test_outsider_gets_404_on_every_workflow_endpoint(owner, outsider):
    # given
    workflow = WorkflowFactory.create(owner=owner)
    client = client_for(outsider)
    url = f"/api/workflows/{workflow.id}"
    # then
    assert client.get("/api/workflows").json()["count"] == 0
    assert client.get(f"/api/workflows?owner={owner.id}").json()["count"] == 0
    calls = [
        client.get(url),
        client.put(url, {"name": "x", "graph": simple_graph(), "version": 1}, format="json"),
        client.patch(url, {"name": "x", "version": 1}, format="json"),
        client.delete(url),
        client.post(f"{url}/duplicate"),
        client.get(f"{url}/versions"),
        client.get(f"{url}/versions/1"),
        client.post(f"{url}/versions/1/restore", {"version": 1}, format="json"),
    ]
    for response in calls:
        assert _error(response) == (404, "not_found")
    # The answer for a private workflow is the same as for one that never existed.
    missing = client.get(f"/api/workflows/{uuid.uuid4()}")
    assert missing.json() == calls[0].json()
    assert Workflow.objects.filter(pk=workflow.id, version=1).exists()
    assert Workflow.objects.filter(owner=outsider).count() == 0


def test_admin_manages_any_workflow(owner, admin_user):
    # given
    workflow = WorkflowFactory.create(owner=owner)
    client = client_for(admin_user)
    # when
    response = client.patch(
        f"/api/workflows/{workflow.id}", {"name": "by admin", "version": 1}, format="json"
    )
    # then
    assert response.status_code == 200
    assert response.json()["owner"]["id"] == str(owner.id)
    assert client.delete(f"/api/workflows/{workflow.id}").status_code == 204


def test_anonymous_is_not_authenticated():
    response = client_for(None).get("/api/workflows")
    assert _error(response) == (401, "not_authenticated")


# --- Duplicate -------------------------------------------------------------------------------


def test_duplicate_public_workflow_clears_foreign_credentials(owner, reader):
    # given
    secret = credential_create(owner=owner, name="c", type="http_bearer", data={"token": "t"})
    workflow = WorkflowFactory.create(
        owner=owner, name="Shared", is_public=True, graph=_http_graph(str(secret.id)), tags=["k"]
    )
    Workflow.objects.filter(pk=workflow.pk).update(version=4, active=True)
    # when
    response = client_for(reader).post(f"/api/workflows/{workflow.id}/duplicate")
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Shared (copy)"
    assert body["version"] == 1
    assert body["is_public"] is False
    assert body["active"] is False
    assert body["tags"] == ["k"]
    assert body["owner"]["id"] == str(reader.id)
    call = next(node for node in body["graph"]["nodes"] if node["id"] == "call")
    assert call["params"]["credential"] is None
    assert WorkflowVersion.objects.filter(workflow_id=body["id"]).count() == 1


def test_owner_duplicate_keeps_own_credentials(owner):
    secret = credential_create(owner=owner, name="c", type="http_bearer", data={"token": "t"})
    workflow = WorkflowFactory.create(
        owner=owner, name="x" * 200, graph=_http_graph(str(secret.id))
    )
    response = client_for(owner).post(f"/api/workflows/{workflow.id}/duplicate")
    assert response.status_code == 201, response.content
    assert response.json()["name"].endswith(" (copy)")
    assert len(response.json()["name"]) == 200
    call = next(node for node in response.json()["graph"]["nodes"] if node["id"] == "call")
    assert call["params"]["credential"] == str(secret.id)


def test_graph_may_not_reference_another_users_credential(owner, outsider):
    # given
    foreign = credential_create(owner=outsider, name="c", type="http_bearer", data={"token": "t"})
    client = client_for(owner)
    # when
    foreign_response = client.post(
        "/api/workflows", {"name": "w", "graph": _http_graph(str(foreign.id))}, format="json"
    )
    missing_response = client.post(
        "/api/workflows", {"name": "w", "graph": _http_graph(str(uuid.uuid4()))}, format="json"
    )
    # then: indistinguishable from a credential that does not exist
    assert _error(foreign_response) == (400, "graph_invalid")
    foreign_errors = foreign_response.json()["error"]["details"]["errors"]
    missing_errors = missing_response.json()["error"]["details"]["errors"]
    assert [e["node_id"] for e in foreign_errors] == ["call"]
    assert [(e["node_id"], e["field"]) for e in foreign_errors] == [
        (e["node_id"], e["field"]) for e in missing_errors
    ]
    assert Workflow.objects.count() == 0


# --- Versions and restore --------------------------------------------------------------------


def test_versions_list_detail_and_restore(owner, reader):
    # given: three versions
    workflow = WorkflowFactory.create(owner=owner, name="v1", tags=["one"])
    client = client_for(owner)
    url = f"/api/workflows/{workflow.id}"
    client.patch(url, {"name": "v2", "graph": simple_graph("2"), "version": 1}, format="json")
    client.patch(url, {"name": "v3", "graph": simple_graph("3"), "version": 2}, format="json")
    # when
    listed = client.get(f"{url}/versions?page_size=2").json()
    # then
    assert listed["count"] == 3
    assert [item["version"] for item in listed["results"]] == [3, 2]
    assert listed["results"][0]["created_by"] == {"id": str(owner.id), "name": owner.name}
    assert set(listed["results"][0]) == {"version", "created_at", "created_by"}
    detail = client.get(f"{url}/versions/1").json()
    assert detail["name"] == "v1"
    assert detail["tags"] == ["one"]
    assert detail["graph"] == simple_graph()
    assert _error(client.get(f"{url}/versions/99")) == (404, "not_found")
    # when: restore v1 without the version, then stale, then right
    assert _error(client.post(f"{url}/versions/1/restore", {}, format="json")) == (
        400,
        "version_required",
    )
    stale = client.post(f"{url}/versions/1/restore", {"version": 2}, format="json")
    assert _error(stale) == (409, "version_conflict")
    assert stale.json()["error"]["details"]["current_version"] == 3
    restored = client.post(f"{url}/versions/1/restore", {"version": 3}, format="json")
    assert restored.status_code == 200, restored.content
    body = restored.json()
    assert body["version"] == 4
    assert body["name"] == "v1"
    assert body["graph"] == simple_graph()
    assert restored["ETag"] == '"4"'
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 4


def test_restore_missing_version_is_404(owner):
    workflow = WorkflowFactory.create(owner=owner)
    response = client_for(owner).post(
        f"/api/workflows/{workflow.id}/versions/7/restore", {"version": 1}, format="json"
    )
    assert _error(response) == (404, "not_found")


# --- Bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"graph": simple_graph()}, "validation_error"),  # name missing
        ({"name": 12, "graph": simple_graph()}, "validation_error"),
        ({"name": "w", "graph": "nodes"}, "validation_error"),
        ({"name": "w", "graph": simple_graph(), "tags": "a,b"}, "validation_error"),
        ({"name": "w", "graph": simple_graph(), "tags": [1]}, "validation_error"),
        ({"name": "w", "graph": simple_graph(), "is_public": "yes"}, "validation_error"),
        ({"name": "w", "graph": simple_graph(), "colour": "red"}, "validation_error"),
        ({"name": "w" * 201, "graph": simple_graph()}, "validation_error"),
        ({"name": "w", "graph": _cyclic_graph()}, "graph_invalid"),
        (
            {
                "name": "w",
                "graph": {
                    "nodes": [
                        {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
                        {"id": "check", "type": "condition", "params": {}},
                    ],
                    "edges": [{"source": "t", "target": "check"}],
                },
            },
            "graph_invalid",
        ),
        (
            {"name": "w", "graph": {"nodes": [{"id": "x", "type": "nope", "params": {}}]}},
            "graph_invalid",
        ),
    ],
)
def test_bad_create_input_is_4xx_and_stores_nothing(owner_client, body, code):
    response = owner_client.post("/api/workflows", body, format="json")
    assert _error(response) == (400, code)
    assert Workflow.objects.count() == 0


def test_graph_errors_name_node_and_field(owner_client):
    graph = simple_graph()
    graph["nodes"][1]["params"] = {"message": "x", "volume": 11}
    response = owner_client.post("/api/workflows", {"name": "w", "graph": graph}, format="json")
    assert _error(response) == (400, "graph_invalid")
    errors = response.json()["error"]["details"]["errors"]
    assert any(error["node_id"] == "log" and "volume" in error["field"] for error in errors)
    assert all({"node_id", "field", "message"} <= set(error) for error in errors)


def test_malformed_json_and_non_object_body(owner_client):
    malformed = owner_client.post(
        "/api/workflows", data='{"name": ', content_type="application/json"
    )
    assert _error(malformed) == (400, "validation_error")
    listed = owner_client.post("/api/workflows", [1, 2], format="json")
    assert _error(listed) == (400, "validation_error")
    assert Workflow.objects.count() == 0


def test_a_nul_character_in_a_body_is_400_on_create_and_update_and_changes_nothing(
    owner, owner_client
):
    # PostgreSQL stores no NUL: a graph with one was a 500 from the insert.
    created = owner_client.post(
        "/api/workflows", {"name": "w", "graph": simple_graph("a\x00b")}, format="json"
    )
    assert _error(created) == (400, "validation_error")
    assert "NUL" in created.json()["error"]["message"]
    assert Workflow.objects.count() == 0
    workflow = WorkflowFactory.create(owner=owner)
    utf16 = '{"name": "n\\u0000", "version": 1}'.encode("utf-16")
    for body, content_type in [
        ('{"description": "d\\u0000", "version": 1}', "application/json"),
        (utf16, "application/json; charset=utf-16"),
    ]:
        patched = owner_client.patch(
            f"/api/workflows/{workflow.pk}", data=body, content_type=content_type
        )
        assert _error(patched) == (400, "validation_error")
        assert "NUL" in patched.json()["error"]["message"]
    workflow.refresh_from_db()
    assert (workflow.version, "\x00" in workflow.name + workflow.description) == (1, False)


def test_non_uuid_id_is_not_found(owner_client):
    assert _error(owner_client.get("/api/workflows/not-a-uuid")) == (404, "not_found")
    assert _error(owner_client.get("/api/workflows/12/versions")) == (404, "not_found")


@override_settings(GRAPH_MAX_NODES=3)
def test_too_many_nodes_is_graph_invalid(owner_client):
    graph = simple_graph()
    graph["nodes"] += [
        {"id": f"d{index}", "type": "debug", "params": {"message": "x"}} for index in range(3)
    ]
    response = owner_client.post("/api/workflows", {"name": "w", "graph": graph}, format="json")
    assert _error(response) == (400, "graph_invalid")


@override_settings(GRAPH_MAX_BYTES=5_000)
def test_graph_over_size_limit_is_graph_invalid(owner):
    # given: a body under MAX_REQUEST_BYTES carrying a graph over GRAPH_MAX_BYTES
    body = {"name": "w", "graph": simple_graph("x" * 20_000)}
    # when
    response = client_for(owner).post("/api/workflows", body, format="json")
    # then
    assert _error(response) == (400, "graph_invalid")
    assert Workflow.objects.count() == 0


def test_update_unknown_field_leaves_data_unchanged(owner):
    workflow = WorkflowFactory.create(owner=owner, name="keep")
    response = client_for(owner).patch(
        f"/api/workflows/{workflow.id}", {"name": "x", "owner": "me", "versoin": 1}, format="json"
    )
    assert _error(response) == (400, "validation_error")
    assert "versoin" in response.json()["error"]["details"]
    workflow.refresh_from_db()
    assert workflow.name == "keep"


def test_put_may_echo_read_only_fields(owner):
    # given: a client PUTs back what it read, with changes
    workflow = WorkflowFactory.create(owner=owner)
    client = client_for(owner)
    body = client.get(f"/api/workflows/{workflow.id}").json()
    body["name"] = "changed"
    # when
    response = client.put(f"/api/workflows/{workflow.id}", body, format="json")
    # then
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "changed"
    assert response.json()["version"] == 2


def test_other_user_in_cast_cannot_infer_private_workflow_by_listing(owner, outsider):
    WorkflowFactory.create(owner=owner, name="secret plan", tags=["hidden"])
    other = UserFactory.create()
    for user in (outsider, other):
        client = client_for(user)
        for query in ("search=secret", "tag=hidden", f"owner={owner.id}", "ordering=name"):
            assert client.get(f"/api/workflows?{query}").json()["count"] == 0


def test_other_user_cannot_read_change_list_or_infer_anything_private(owner, outsider):
    # given: owner's private workflow, credential and API key
    workflow = WorkflowFactory.create(owner=owner, name="private plan", tags=["hush"])
    secret = credential_create(owner=owner, name="c", type="http_bearer", data={"token": "tk"})
    key_response = client_for(owner).post(
        "/api/api-keys", {"name": "k", "scopes": ["workflows:read"]}, format="json"
    )
    key_id = key_response.json()["id"]
    client = client_for(outsider)
    w = f"/api/workflows/{workflow.id}"
    c = f"/api/credentials/{secret.id}"
    # when: every endpoint is tried as the other user
    not_found = [
        client.get(w),
        client.put(w, {"name": "x", "graph": simple_graph(), "version": 1}, format="json"),
        client.patch(w, {"name": "x"}, format="json", HTTP_IF_MATCH='"1"'),
        client.delete(w),
        client.post(f"{w}/duplicate"),
        client.get(f"{w}/versions"),
        client.get(f"{w}/versions/1"),
        client.post(f"{w}/versions/1/restore", {"version": 1}, format="json"),
        client.get(c),
        client.put(c, {"name": "x", "type": "http_bearer", "data": {"token": "z"}}, format="json"),
        client.delete(c),
        client.delete(f"/api/api-keys/{key_id}"),
    ]
    # then
    for response in not_found:
        assert _error(response) == (404, "not_found"), response.request
    assert client.get("/api/workflows").json()["count"] == 0
    assert client.get("/api/credentials").json()["count"] == 0
    assert client.get("/api/api-keys").json()["count"] == 0
    # and referencing the owner's credential from one's own graph says nothing about it
    response = client.post(
        "/api/workflows", {"name": "probe", "graph": _http_graph(str(secret.id))}, format="json"
    )
    assert _error(response) == (400, "graph_invalid")
    stored = Workflow.objects.get(pk=workflow.id)
    assert (stored.name, stored.version) == ("private plan", 1)
    assert client_for(owner).get(c).json()["name"] == "c"
