"""`GET /health`: ok, degraded (Redis down or no worker) and down (database unreachable)."""

from __future__ import annotations

import pytest
import requests
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import tokens_issue
from autoflow.workers import HEARTBEAT_KEY, heartbeat, redis_client
from tests.servers import closed_port, daphne_server

CHECKS = {"database", "broker", "cache", "channel_layer", "workers", "queue"}


def _assert_check_shape(checks: dict) -> None:
    assert set(checks) == CHECKS
    for name, check in checks.items():
        assert isinstance(check["ok"], bool), name
        assert isinstance(check["latency_ms"], (int, float)), name
        assert ("error" in check) == (not check["ok"]), name
    assert "count" in checks["workers"]
    assert "depth" in checks["queue"]


@pytest.mark.e2e  # counts heartbeats in Redis
@pytest.mark.django_db
def test_health_ok_with_a_live_worker():
    heartbeat("test-worker@host")
    response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    _assert_check_shape(body["checks"])
    assert body["status"] == "ok", body
    assert body["checks"]["workers"]["count"] >= 1
    assert isinstance(body["checks"]["queue"]["depth"], int)


@pytest.mark.e2e  # counts heartbeats in Redis
@pytest.mark.django_db
def test_health_degraded_without_a_worker():
    redis_client().delete(HEARTBEAT_KEY)
    response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    _assert_check_shape(body["checks"])
    assert body["status"] == "degraded"
    assert body["checks"]["workers"] == {
        "ok": False,
        "latency_ms": body["checks"]["workers"]["latency_ms"],
        "error": body["checks"]["workers"]["error"],
        "count": 0,
    }


@pytest.mark.django_db
def test_health_degraded_when_redis_is_unreachable():
    down = f"redis://127.0.0.1:{closed_port()}/0"
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": down,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 1},
        }
    }
    with override_settings(REDIS_URL=down, CACHES=caches):
        response = APIClient().get("/health")
    assert response.status_code == 200
    body = response.json()
    _assert_check_shape(body["checks"])
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] is True
    for name in ("broker", "cache", "channel_layer", "workers", "queue"):
        assert body["checks"][name]["ok"] is False, name
    assert body["checks"]["workers"]["count"] is None
    assert body["checks"]["queue"]["depth"] is None


@pytest.mark.e2e
@pytest.mark.django_db
def test_database_unreachable_is_503_down_and_api_answers_503():
    user = User(pk="00000000-0000-0000-0000-000000000001", email="gone@example.com")
    user.save()
    access = tokens_issue(user=user)["access"]
    with daphne_server(DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed_port()}/x") as url:
        # when
        health = requests.get(f"{url}/health", cookies={"sessionid": "stale"}, timeout=20)
        login = requests.post(
            f"{url}/api/auth/login",
            json={"email": "gone@example.com", "password": "whatever"},
            timeout=20,
        )
        me = requests.get(
            f"{url}/api/auth/me", headers={"Authorization": f"Bearer {access}"}, timeout=20
        )
        index = requests.get(f"{url}/api", timeout=20)
    # then
    assert health.status_code == 503
    body = health.json()
    assert body["status"] == "down"
    assert body["checks"]["database"]["ok"] is False
    assert body["checks"]["database"]["error"]
    for response in (login, me):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "service_unavailable"
        assert response.headers["X-Request-ID"]
    assert index.status_code == 200
