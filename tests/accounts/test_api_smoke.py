"""Smoke test of the auth flow through DRF's client (full coverage lives beside it)."""

import pytest

pytestmark = pytest.mark.django_db


def test_register_then_me(anon_client):
    # when
    response = anon_client.post(
        "/api/auth/register",
        {"email": "New@Example.com", "password": "a sturdy passphrase 42", "name": "Nia"},
        format="json",
    )
    # then
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["user"]["email"] == "new@example.com"
    assert body["user"]["role"] == "user"
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    me = anon_client.get("/api/auth/me")
    assert me.status_code == 200
    assert me.json()["name"] == "Nia"
    assert me["X-Request-ID"]
