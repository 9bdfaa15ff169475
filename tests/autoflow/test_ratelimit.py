"""Rate limits: 429 with Retry-After, keyed as SPEC.md says, failing open without Redis."""

from __future__ import annotations

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.tokens import tokens_issue
from autoflow.ratelimit import client_ip
from tests.conftest import client_for
from tests.factories import DEFAULT_PASSWORD
from tests.servers import closed_port

pytestmark = pytest.mark.django_db


def _login(email: str, ip: str = "10.0.0.1", password: str | None = None) -> int:
    client = APIClient(REMOTE_ADDR=ip)
    response = client.post(
        "/api/auth/login", {"email": email, "password": password or "wrong"}, format="json"
    )
    return response.status_code


def test_login_is_limited_after_the_fifth_attempt_with_retry_after():
    client = APIClient(REMOTE_ADDR="10.0.0.1")
    statuses = []
    for _ in range(6):
        response = client.post(
            "/api/auth/login", {"email": "a@example.com", "password": "x"}, format="json"
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 5 + [429]
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert 0 < int(response["Retry-After"]) <= 900
    assert body["error"]["details"]["retry_after"] == int(response["Retry-After"])


def test_auth_limit_per_email_holds_across_addresses():
    statuses = [_login("victim@example.com", ip=f"10.0.1.{n}") for n in range(6)]
    assert statuses == [401] * 5 + [429]
    # another email from a fresh address is not affected
    assert _login("other@example.com", ip="10.0.2.1") == 401


def test_auth_limit_per_address_holds_across_emails():
    statuses = [_login(f"spray{n}@example.com", ip="10.0.3.1") for n in range(6)]
    assert statuses == [401] * 5 + [429]
    # the same emails from another address are still answered
    assert _login("spray0@example.com", ip="10.0.3.2") == 401


def test_register_shares_the_auth_limit():
    client = APIClient(REMOTE_ADDR="10.0.4.1")
    statuses = [
        client.post(
            "/api/auth/register",
            {"email": f"r{n}@example.com", "password": "short", "name": "R"},
            format="json",
        ).status_code
        for n in range(6)
    ]
    assert statuses == [400] * 5 + [429]


def test_a_successful_login_counts_too(owner):
    statuses = [_login(owner.email, password=DEFAULT_PASSWORD) for _ in range(6)]
    assert statuses == [200] * 5 + [429]


@override_settings(RATE_LIMIT_GENERAL="3/15m")
def test_general_limit_is_per_user(owner, outsider):
    owner_client = client_for(owner)
    statuses = [owner_client.get("/api/auth/me").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert "Retry-After" in owner_client.get("/api/auth/me")
    # another user behind the same address is not limited by the owner's count
    assert client_for(outsider).get("/api/auth/me").status_code == 200


@override_settings(RATE_LIMIT_GENERAL="2/15m")
def test_general_limit_is_per_address_when_anonymous():
    client = APIClient(REMOTE_ADDR="10.0.5.1")
    statuses = [client.get("/api").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert APIClient(REMOTE_ADDR="10.0.5.2").get("/api").status_code == 200


@override_settings(RATE_LIMIT_GENERAL="1/15m")
def test_health_is_exempt():
    client = APIClient()
    assert [client.get("/health").status_code in (200, 503) for _ in range(3)] == [True] * 3


@override_settings(RATE_LIMIT_REFRESH="2/15m")
def test_refresh_is_limited_per_user_not_per_address(owner, outsider):
    def refresh(user, ip):
        token = tokens_issue(user=user)["refresh"]
        return (
            APIClient(REMOTE_ADDR=ip)
            .post("/api/auth/refresh", {"refresh": token}, format="json")
            .status_code
        )

    assert [refresh(owner, f"10.0.6.{n}") for n in range(3)] == [200, 200, 429]
    # the outsider shares the owner's last address and is not logged out by it
    assert refresh(outsider, "10.0.6.2") == 200


def _redis_down_caches() -> dict:
    down = {
        "BACKEND": "autoflow.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 1,
            "SOCKET_TIMEOUT": 1,
            "IGNORE_EXCEPTIONS": True,
        },
    }
    # Both as settings.py has them: the counters live in the second.
    return {"default": down, "ratelimit": {**down, "BACKEND": "autoflow.cache.RateLimitCache"}}


def test_rate_limits_fail_open_when_redis_is_unreachable(owner, caplog):
    with override_settings(CACHES=_redis_down_caches()):
        statuses = [_login(owner.email, password=DEFAULT_PASSWORD) for _ in range(7)]
        me = client_for(owner).get("/api/auth/me")
    assert statuses == [200] * 7
    assert me.status_code == 200
    assert "failing open" in caplog.text


def test_rate_limits_fail_open_even_when_the_cache_raises(owner, caplog):
    caches = _redis_down_caches()
    for alias in caches.values():
        alias["OPTIONS"] = {**alias["OPTIONS"], "IGNORE_EXCEPTIONS": False}
    with override_settings(CACHES=caches, DJANGO_REDIS_IGNORE_EXCEPTIONS=False):
        statuses = [_login(owner.email, password=DEFAULT_PASSWORD) for _ in range(6)]
    assert statuses == [200] * 6
    assert "failing open" in caplog.text


@pytest.mark.parametrize(
    ("trusted", "forwarded", "expected"),
    [
        (0, "1.1.1.1", "9.9.9.9"),
        (1, "1.1.1.1", "1.1.1.1"),
        (1, "6.6.6.6, 1.1.1.1", "1.1.1.1"),
        (2, "6.6.6.6, 1.1.1.1, 2.2.2.2", "1.1.1.1"),
        (3, "1.1.1.1", "1.1.1.1"),
    ],
)
def test_client_ip_trusts_only_the_configured_proxies(rf, trusted, forwarded, expected):
    request = rf.get("/", REMOTE_ADDR="9.9.9.9", HTTP_X_FORWARDED_FOR=forwarded)
    with override_settings(TRUSTED_PROXY_COUNT=trusted):
        assert client_ip(request) == expected
