"""API keys: shown once, stored as a hash, scoped, revocable, expiring, JWT-only elsewhere."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from accounts.authentication import api_key_hash
from accounts.models import ApiKey, ApiScope, User
from accounts.services import api_key_create, user_deactivate
from tests.conftest import client_for
from tests.factories import WorkflowFactory, simple_graph

pytestmark = pytest.mark.django_db

ALL_SCOPES = [scope.value for scope in ApiScope]


def _key_client(user: User, scopes: list[str], **kwargs: Any) -> tuple[APIClient, ApiKey]:
    api_key, raw_key = api_key_create(
        user=user, name="k", scopes=scopes, expires_at=kwargs.get("expires_at")
    )
    client = APIClient()
    if kwargs.get("header") == "x-api-key":
        client.credentials(HTTP_X_API_KEY=raw_key)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client, api_key


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_create_shows_key_once_and_stores_only_its_hash(owner, owner_client):
    # when
    response = owner_client.post(
        "/api/api-keys",
        {"name": "CI", "scopes": ["workflows:read", "executions:write"]},
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"id", "name", "key", "prefix", "scopes", "expires_at", "created_at"}
    key = body["key"]
    assert key.startswith(f"af_{body['prefix']}_")
    assert len(key) >= 40
    assert body["scopes"] == ["executions:write", "workflows:read"]
    stored = ApiKey.objects.get(pk=body["id"])
    assert stored.key_hash == api_key_hash(key)
    with connection.cursor() as cursor:
        row_id = ApiKey._meta.pk.get_db_prep_value(uuid.UUID(body["id"]), connection)
        cursor.execute("SELECT * FROM accounts_apikey WHERE id = %s", [row_id])
        row = " ".join(str(column) for column in cursor.fetchone())
    assert key not in row
    listed = owner_client.get("/api/api-keys").json()
    assert listed["count"] == 1
    assert "key" not in listed["results"][0]
    assert key not in str(listed)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": ["admin:everything"]},
        {"name": "k", "scopes": ["workflows:read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"scopes": ["workflows:read"]},
    ],
)
def test_create_bad_input(owner_client, body):
    response = owner_client.post("/api/api-keys", body, format="json")
    assert _error(response) == (400, "validation_error")
    assert ApiKey.objects.count() == 0


def test_list_and_delete_only_own_keys(owner, outsider):
    # given
    _, owner_key = _key_client(owner, ["workflows:read"])
    _key_client(outsider, ["workflows:read"])
    client = client_for(owner)
    # then
    assert client.get("/api/api-keys").json()["count"] == 1
    assert _error(client_for(outsider).delete(f"/api/api-keys/{owner_key.id}")) == (
        404,
        "not_found",
    )
    assert client.delete(f"/api/api-keys/{owner_key.id}").status_code == 204
    assert client.get("/api/api-keys").json()["count"] == 0


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_workflows_read_scope(owner, header):
    # given
    workflow = WorkflowFactory.create(owner=owner)
    client, _ = _key_client(owner, ["workflows:read"], header=header)
    # then: reads are allowed
    assert client.get("/api/workflows").json()["count"] == 1
    assert client.get(f"/api/workflows/{workflow.id}").status_code == 200
    assert client.get(f"/api/workflows/{workflow.id}/versions").status_code == 200
    # and writes need workflows:write, named in the error
    response = client.patch(
        f"/api/workflows/{workflow.id}", {"name": "x", "version": 1}, format="json"
    )
    assert _error(response) == (403, "scope_missing")
    assert "workflows:write" in response.json()["error"]["message"]
    assert response.json()["error"]["details"]["scope"] == "workflows:write"
    assert _error(client.post(f"/api/workflows/{workflow.id}/duplicate"))[1] == "scope_missing"


def test_workflows_write_scope(owner):
    # given
    client, _ = _key_client(owner, ["workflows:write"])
    # then: writes are allowed, reads need workflows:read
    created = client.post("/api/workflows", {"name": "w", "graph": simple_graph()}, format="json")
    assert created.status_code == 201, created.content
    response = client.get("/api/workflows")
    assert _error(response) == (403, "scope_missing")
    assert response.json()["error"]["details"]["scope"] == "workflows:read"
    assert client.delete(f"/api/workflows/{created.json()['id']}").status_code == 204


class _ExecutionsProbe(APIView):
    """An endpoint guarded like the executions API, to check the executions scopes."""

    scopes = {"read": "executions:read", "write": "executions:write"}

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

    def post(self, request: Request) -> Response:
        return Response({"ok": True})


@pytest.mark.parametrize(
    ("scopes", "method", "expected_status", "missing"),
    [
        (["executions:read"], "get", 200, None),
        (["executions:read"], "post", 403, "executions:write"),
        (["executions:write"], "post", 200, None),
        (["executions:write"], "get", 403, "executions:read"),
        (["workflows:read", "workflows:write"], "get", 403, "executions:read"),
    ],
)
def test_executions_scopes(owner, scopes, method, expected_status, missing):
    # given
    _, raw_key = api_key_create(user=owner, name="k", scopes=scopes, expires_at=None)
    factory = APIRequestFactory()
    request = getattr(factory, method)("/probe", HTTP_X_API_KEY=raw_key)
    # when
    response = _ExecutionsProbe.as_view()(request)
    # then
    assert response.status_code == expected_status
    if missing:
        assert response.data["error"]["code"] == "scope_missing"
        assert response.data["error"]["details"]["scope"] == missing


def test_key_acts_as_its_owner_only(owner, outsider):
    # given: a key with every scope, and someone else's private workflow
    private = WorkflowFactory.create(owner=outsider)
    client, _ = _key_client(owner, ALL_SCOPES)
    # then
    assert _error(client.get(f"/api/workflows/{private.id}")) == (404, "not_found")
    assert client.get("/api/workflows").json()["count"] == 0


def test_revoked_key_is_token_invalid(owner):
    client, api_key = _key_client(owner, ALL_SCOPES)
    assert client.get("/api/workflows").status_code == 200
    assert client_for(owner).delete(f"/api/api-keys/{api_key.id}").status_code == 204
    assert _error(client.get("/api/workflows")) == (401, "token_invalid")


def test_expired_key_is_token_invalid(owner):
    client, api_key = _key_client(
        owner, ALL_SCOPES, expires_at=timezone.now() + dt.timedelta(hours=1)
    )
    assert client.get("/api/workflows").status_code == 200
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert _error(client.get("/api/workflows")) == (401, "token_invalid")


def test_wrong_and_malformed_keys_are_token_invalid(owner):
    _, api_key = _key_client(owner, ALL_SCOPES)
    for raw in ("nonsense", f"af_{api_key.prefix}_wrongsecret", "af_unknown_secret"):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=raw)
        assert _error(client.get("/api/workflows")) == (401, "token_invalid")


def test_deactivated_users_key_is_token_invalid(owner):
    client, _ = _key_client(owner, ALL_SCOPES)
    user_deactivate(user=owner)
    assert _error(client.get("/api/workflows")) == (401, "token_invalid")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/credentials", None),
        ("post", "/api/credentials", {"name": "c", "type": "http_bearer", "data": {"token": "t"}}),
        ("get", "/api/api-keys", None),
        ("post", "/api/api-keys", {"name": "k", "scopes": ["workflows:read"]}),
        ("get", "/api/auth/me", None),
        ("patch", "/api/auth/me", {"name": "x"}),
        ("post", "/api/auth/password", {"current_password": "a", "new_password": "b"}),
    ],
)
def test_key_is_refused_on_jwt_only_endpoints(owner, method, path, body):
    # given
    client, _ = _key_client(owner, ALL_SCOPES)
    # when
    response = getattr(client, method)(path, body, format="json")
    # then
    assert _error(response) == (403, "permission_denied")
    assert ApiKey.objects.count() == 1


def test_last_used_is_recorded(owner):
    client, api_key = _key_client(owner, ALL_SCOPES)
    assert api_key.last_used_at is None
    client.get("/api/workflows")
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
