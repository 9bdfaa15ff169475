"""Authorization matrix, generated from the URL conf: every endpoint, method and identity.

Each endpoint must have an entry in ACCESS (who may call it); an endpoint added without one
fails `test_every_endpoint_has_an_expectation`, so none can be forgotten. The identities:
anonymous, an expired access token, user B against user A's objects (JWT and an API key with
the right scope), and user A's API keys with each scope.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import ApiScope
from accounts.services import api_key_create
from autoflow.views import api_endpoints
from tests.factories import UserFactory
from tests.security.world import World, world_create

PUBLIC = "public"  # no credentials needed; credentials sent are ignored
JWT_ONLY = "jwt"  # a JWT only: an API key → 403 permission_denied

# Who may call each endpoint: PUBLIC, JWT_ONLY, or the API-key scope it needs (SPEC.md).
ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/health"): PUBLIC,
    ("GET", "/api"): PUBLIC,
    ("GET", "/api/schema"): PUBLIC,
    ("GET", "/api/docs"): PUBLIC,
    ("POST", "/api/auth/register"): PUBLIC,
    ("POST", "/api/auth/login"): PUBLIC,
    ("POST", "/api/auth/refresh"): PUBLIC,
    ("POST", "/api/auth/logout"): PUBLIC,
    ("GET", "/api/auth/me"): JWT_ONLY,
    ("PATCH", "/api/auth/me"): JWT_ONLY,
    ("POST", "/api/auth/password"): JWT_ONLY,
    ("GET", "/api/api-keys"): JWT_ONLY,
    ("POST", "/api/api-keys"): JWT_ONLY,
    ("DELETE", "/api/api-keys/{api_key_id}"): JWT_ONLY,
    ("GET", "/api/credentials"): JWT_ONLY,
    ("POST", "/api/credentials"): JWT_ONLY,
    ("GET", "/api/credentials/{credential_id}"): JWT_ONLY,
    ("PUT", "/api/credentials/{credential_id}"): JWT_ONLY,
    ("DELETE", "/api/credentials/{credential_id}"): JWT_ONLY,
    ("GET", "/api/workflows"): "workflows:read",
    ("POST", "/api/workflows"): "workflows:write",
    ("GET", "/api/workflows/{workflow_id}"): "workflows:read",
    ("PUT", "/api/workflows/{workflow_id}"): "workflows:write",
    ("PATCH", "/api/workflows/{workflow_id}"): "workflows:write",
    ("DELETE", "/api/workflows/{workflow_id}"): "workflows:write",
    ("POST", "/api/workflows/{workflow_id}/duplicate"): "workflows:write",
    ("GET", "/api/workflows/{workflow_id}/versions"): "workflows:read",
    ("GET", "/api/workflows/{workflow_id}/versions/{version_number}"): "workflows:read",
    ("POST", "/api/workflows/{workflow_id}/versions/{version_number}/restore"): ("workflows:write"),
    ("POST", "/api/workflows/{workflow_id}/execute"): "executions:write",
    ("GET", "/api/workflows/{workflow_id}/stats"): "workflows:read",
    ("GET", "/api/workflows/{workflow_id}/webhook"): "workflows:read",
    ("POST", "/api/workflows/{workflow_id}/webhook/rotate"): "workflows:write",
    ("GET", "/api/executions"): "executions:read",
    ("GET", "/api/executions/{execution_id}"): "executions:read",
    ("DELETE", "/api/executions/{execution_id}"): "executions:write",
    ("GET", "/api/executions/{execution_id}/logs"): "executions:read",
    ("POST", "/api/executions/{execution_id}/retry"): "executions:write",
    ("POST", "/api/executions/{execution_id}/cancel"): "executions:write",
}

# URL patterns under /api that are not DRF views, each with the test that covers it.
NON_VIEW_PATTERNS = {
    "/api/hooks/{token}": "test_webhook_urls_answer_404_for_unknown_tokens_whatever_the_caller",
}

ENDPOINTS = sorted((e["method"], e["path"]) for e in api_endpoints())
PROTECTED = [endpoint for endpoint in ENDPOINTS if ACCESS.get(endpoint) not in (None, PUBLIC)]
HIGH_LIMIT = "1000000/15m"


def _all_api_patterns() -> list[str]:
    def walk(patterns: list[Any], prefix: str) -> list[str]:
        found: list[str] = []
        for entry in patterns:
            if isinstance(entry, URLResolver):
                found.extend(walk(entry.url_patterns, prefix + str(entry.pattern)))
            elif isinstance(entry, URLPattern):
                found.append(prefix + str(entry.pattern))
        return found

    paths = []
    for pattern in walk(get_resolver().url_patterns, ""):
        if not pattern.startswith("api") or "(?P<path>" in pattern:
            continue  # the catch-all that answers JSON 404s
        for converter in ("uuid:", "int:", "str:"):
            pattern = pattern.replace(f"<{converter}", "<")
        paths.append("/" + pattern.replace("<", "{").replace(">", "}"))
    return paths


def test_every_endpoint_has_an_expectation():
    missing = [endpoint for endpoint in ENDPOINTS if endpoint not in ACCESS]
    stale = [endpoint for endpoint in ACCESS if endpoint not in ENDPOINTS]
    assert not missing, f"endpoints without an authorization expectation: {missing}"
    assert not stale, f"expectations for endpoints that no longer exist: {stale}"


def test_every_api_url_pattern_is_a_listed_endpoint_or_covered_elsewhere():
    listed = {path for _, path in ENDPOINTS}
    unlisted = [p for p in _all_api_patterns() if p not in listed and p not in NON_VIEW_PATTERNS]
    assert not unlisted, f"URL patterns under /api with no authorization expectation: {unlisted}"


@pytest.fixture
def worlds(db: Any, settings: Any) -> tuple[World, World]:
    settings.RATE_LIMIT_GENERAL = HIGH_LIMIT
    settings.RATE_LIMIT_AUTH = HIGH_LIMIT
    settings.RATE_LIMIT_REFRESH = HIGH_LIMIT
    alice = world_create(UserFactory.create(email="alice@example.com", name="Alice"))
    bob = world_create(UserFactory.create(email="bob@example.com", name="Bob"))
    return alice, bob


def _call(client: APIClient, method: str, path: str, world: World) -> Any:
    url = path.format(**world.path_values())
    body = {"version": 1, "name": "x"} if method in ("POST", "PUT", "PATCH") else None
    return client.generic(
        method,
        url,
        data="" if body is None else json.dumps(body),
        content_type="application/json",
    )


def _client(*, bearer: str | None = None, api_key: str | None = None) -> APIClient:
    client = APIClient()
    if bearer is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer}")
    if api_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


def _code(response: Any) -> str | None:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _key_for(world: World, scope: str) -> str:
    _, raw = api_key_create(user=world.user, name=scope, scopes=[scope], expires_at=None)
    return raw


@pytest.mark.parametrize(("method", "path"), PROTECTED, ids=[f"{m} {p}" for m, p in PROTECTED])
def test_protected_endpoint_refuses_every_identity_that_may_not_call_it(
    method: str, path: str, worlds: tuple[World, World]
):
    alice, bob = worlds
    access = ACCESS[(method, path)]
    owns_object = "{" in path
    expired = AccessToken.for_user(alice.user)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    outcomes: list[tuple[str, int, str | None, int, str]] = []

    def expect(label: str, response: Any, status: int, code: str) -> None:
        outcomes.append((label, response.status_code, _code(response), status, code))

    # anonymous and an expired token: 401
    expect("anonymous", _call(_client(), method, path, alice), 401, "not_authenticated")
    expired_client = _client(bearer=str(expired))
    expect("expired token", _call(expired_client, method, path, alice), 401, "token_invalid")
    garbage_key = _client(api_key="af_0000_not-a-key")
    expect("unknown API key", _call(garbage_key, method, path, alice), 401, "token_invalid")
    # API keys: JWT-only endpoints refuse all; scoped ones refuse the other scopes
    for scope in ApiScope.values:
        if scope == access:
            continue  # the one allowed key is tried last: it may change or delete the object
        response = _call(_client(api_key=_key_for(alice, scope)), method, path, alice)
        refusal = "permission_denied" if access == JWT_ONLY else "scope_missing"
        expect(f"API key {scope}", response, 403, refusal)
    # user B against user A's objects: 404, by JWT and by a key with the right scope
    if owns_object:
        bob_jwt = _client(bearer=str(AccessToken.for_user(bob.user)))
        expect("user B (JWT)", _call(bob_jwt, method, path, alice), 404, "not_found")
        if access != JWT_ONLY:
            bob_key = _client(api_key=_key_for(bob, access))
            expect(f"user B (key {access})", _call(bob_key, method, path, alice), 404, "not_found")
    # the right credential passes authorization (its answer may still be a 4xx on the body)
    allowed = (
        _client(bearer=str(AccessToken.for_user(alice.user)))
        if access == JWT_ONLY
        else _client(api_key=_key_for(alice, access))
    )
    response = _call(allowed, method, path, alice)
    wrong = [o for o in outcomes if (o[1], o[2]) != (o[3], o[4])]
    assert not wrong, "\n".join(
        f"{method} {path} as {label}: got {got} {got_code}, expected {want} {want_code}"
        for label, got, got_code, want, want_code in wrong
    )
    assert response.status_code not in (401, 403, 404), (
        f"{method} {path} with the right credential: {response.status_code} {response.content!r}"
    )
    assert response.status_code < 500


PUBLIC_ENDPOINTS = [endpoint for endpoint in ENDPOINTS if ACCESS.get(endpoint) == PUBLIC]


@pytest.mark.parametrize(
    ("method", "path"), PUBLIC_ENDPOINTS, ids=[f"{m} {p}" for m, p in PUBLIC_ENDPOINTS]
)
def test_public_endpoint_ignores_missing_or_bad_credentials(
    method: str, path: str, worlds: tuple[World, World]
):
    alice, _ = worlds
    expired = AccessToken.for_user(alice.user)
    expired.set_exp(lifetime=timedelta(seconds=-1))
    for client in (_client(), _client(bearer=str(expired)), _client(api_key="af_0_bad")):
        response = _call(client, method, path, alice)
        assert response.status_code not in (401, 403), (method, path, response.content)
        assert response.status_code < 500


def test_webhook_urls_answer_404_for_unknown_tokens_whatever_the_caller(
    worlds: tuple[World, World],
):
    alice, _ = worlds
    jwt = _client(bearer=str(AccessToken.for_user(alice.user)))
    for client in (_client(), jwt, _client(api_key=alice.raw_api_key)):
        response = client.post("/api/hooks/not-a-token", {}, format="json")
        assert response.status_code == 404
        assert _code(response) == "not_found"
