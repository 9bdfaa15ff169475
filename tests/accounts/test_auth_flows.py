"""Every auth flow and its failures, driven through a real daphne server with `requests`."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
import requests
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import RevokedTokenFamily, User
from accounts.services import api_key_create, user_deactivate
from accounts.tokens import FAMILY_CLAIM, refresh_token_decode

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("transactional_db")]

PASSWORD = "a sturdy passphrase 42"


def _register(url: str, email: str = "nia@example.com", name: str = "Nia") -> dict[str, Any]:
    response = requests.post(
        f"{url}/api/auth/register",
        json={"email": email, "password": PASSWORD, "name": name},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _refresh(url: str, refresh: str) -> requests.Response:
    return requests.post(f"{url}/api/auth/refresh", json={"refresh": refresh}, timeout=10)


def _me(url: str, access: str) -> requests.Response:
    return requests.get(
        f"{url}/api/auth/me", headers={"Authorization": f"Bearer {access}"}, timeout=10
    )


def _error_code(response: requests.Response) -> str:
    return str(response.json()["error"]["code"])


def test_register_returns_user_and_tokens(live_daphne):
    # when
    body = _register(live_daphne, email="  Nia@Example.COM ")
    # then
    assert set(body) == {"user", "access", "refresh"}
    assert set(body["user"]) == {"id", "email", "name", "role"}
    assert body["user"]["email"] == "nia@example.com"
    assert body["user"]["role"] == "user"
    assert User.objects.get(email="nia@example.com").check_password(PASSWORD)


def test_register_with_malformed_json_is_validation_error(live_daphne):
    response = requests.post(
        f"{live_daphne}/api/auth/register",
        data=b'{"email": "x@example.com", ',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400
    assert _error_code(response) == "validation_error"
    assert response.headers["Content-Type"].startswith("application/json")


def test_register_with_missing_fields_names_them(live_daphne):
    response = requests.post(f"{live_daphne}/api/auth/register", json={}, timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert set(error["details"]) >= {"email", "password"}


def test_register_with_weak_password_explains_on_password(live_daphne):
    response = requests.post(
        f"{live_daphne}/api/auth/register",
        json={"email": "weak@example.com", "password": "12345678", "name": "W"},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"]["password"]
    assert not User.objects.filter(email="weak@example.com").exists()


def test_register_with_taken_email_is_validation_error_on_email(live_daphne):
    _register(live_daphne, email="taken@example.com")
    response = requests.post(
        f"{live_daphne}/api/auth/register",
        json={"email": "TAKEN@example.com", "password": PASSWORD, "name": "Again"},
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert list(error["details"]) == ["email"]


def test_login_answers_the_same_for_unknown_email_and_wrong_password(live_daphne):
    _register(live_daphne, email="known@example.com")
    # when
    wrong_password = requests.post(
        f"{live_daphne}/api/auth/login",
        json={"email": "known@example.com", "password": "not the password"},
        timeout=10,
    )
    unknown_email = requests.post(
        f"{live_daphne}/api/auth/login",
        json={"email": "nobody@example.com", "password": "not the password"},
        timeout=10,
    )
    # then
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json() == unknown_email.json()
    assert _error_code(wrong_password) == "invalid_credentials"


def test_login_then_me_and_rename(live_daphne):
    _register(live_daphne, email="lee@example.com", name="Lee")
    login = requests.post(
        f"{live_daphne}/api/auth/login",
        json={"email": "LEE@example.com", "password": PASSWORD},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    access = login.json()["access"]
    # when
    renamed = requests.patch(
        f"{live_daphne}/api/auth/me",
        json={"name": "Lee Renamed"},
        headers={"Authorization": f"Bearer {access}"},
        timeout=10,
    )
    # then
    assert renamed.status_code == 200
    assert _me(live_daphne, access).json()["name"] == "Lee Renamed"


def test_me_without_credentials_is_not_authenticated(live_daphne):
    response = requests.get(f"{live_daphne}/api/auth/me", timeout=10)
    assert response.status_code == 401
    assert _error_code(response) == "not_authenticated"


def test_expired_access_token_is_refused(live_daphne):
    body = _register(live_daphne)
    user = User.objects.get(pk=body["user"]["id"])
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=timedelta(seconds=-1))
    # when
    response = _me(live_daphne, str(token))
    # then
    assert response.status_code == 401
    assert _error_code(response) == "token_invalid"


def test_refresh_token_used_as_access_token_is_refused(live_daphne):
    body = _register(live_daphne)
    response = _me(live_daphne, body["refresh"])
    assert response.status_code == 401
    assert _error_code(response) == "token_invalid"


def test_garbage_bearer_token_is_refused(live_daphne):
    response = _me(live_daphne, "not-a-jwt")
    assert response.status_code == 401
    assert _error_code(response) == "token_invalid"


def test_refresh_rotates_and_the_new_pair_works(live_daphne):
    body = _register(live_daphne)
    # when
    response = _refresh(live_daphne, body["refresh"])
    # then
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert set(rotated) == {"access", "refresh"}
    assert rotated["refresh"] != body["refresh"]
    assert _me(live_daphne, rotated["access"]).status_code == 200
    assert _refresh(live_daphne, rotated["refresh"]).status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_its_family(live_daphne):
    body = _register(live_daphne)
    rotated = _refresh(live_daphne, body["refresh"]).json()
    # when: the old token comes back (a thief's copy)
    reuse = _refresh(live_daphne, body["refresh"])
    # then
    assert reuse.status_code == 401
    assert _error_code(reuse) == "token_invalid"
    family = refresh_token_decode(body["refresh"])[FAMILY_CLAIM]
    assert RevokedTokenFamily.objects.filter(family=family).exists()
    legit = _refresh(live_daphne, rotated["refresh"])
    assert legit.status_code == 401


def test_logout_then_refresh_is_refused(live_daphne):
    body = _register(live_daphne)
    # when
    logout = requests.post(
        f"{live_daphne}/api/auth/logout", json={"refresh": body["refresh"]}, timeout=10
    )
    # then
    assert logout.status_code == 204
    assert logout.content == b""
    response = _refresh(live_daphne, body["refresh"])
    assert response.status_code == 401
    assert _error_code(response) == "token_invalid"


def test_logout_twice_is_harmless_and_garbage_is_refused(live_daphne):
    body = _register(live_daphne)
    for _ in range(2):
        response = requests.post(
            f"{live_daphne}/api/auth/logout", json={"refresh": body["refresh"]}, timeout=10
        )
        assert response.status_code == 204
    garbage = requests.post(
        f"{live_daphne}/api/auth/logout", json={"refresh": "garbage"}, timeout=10
    )
    assert garbage.status_code == 401
    missing = requests.post(f"{live_daphne}/api/auth/logout", json={}, timeout=10)
    assert missing.status_code == 400
    assert "refresh" in missing.json()["error"]["details"]


def test_concurrent_refreshes_with_one_token_let_exactly_one_through(live_daphne):
    body = _register(live_daphne)
    barrier = threading.Barrier(6)
    statuses: list[int] = []
    lock = threading.Lock()

    def attempt() -> None:
        barrier.wait(timeout=10)
        status = _refresh(live_daphne, body["refresh"]).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # then
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401]


def test_password_change_revokes_refresh_tokens(live_daphne):
    body = _register(live_daphne)
    headers = {"Authorization": f"Bearer {body['access']}"}
    wrong = requests.post(
        f"{live_daphne}/api/auth/password",
        json={"current_password": "nope", "new_password": "another sturdy phrase 7"},
        headers=headers,
        timeout=10,
    )
    assert wrong.status_code == 400
    assert "current_password" in wrong.json()["error"]["details"]
    weak = requests.post(
        f"{live_daphne}/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "password"},
        headers=headers,
        timeout=10,
    )
    assert weak.status_code == 400
    assert "new_password" in weak.json()["error"]["details"]
    # when
    changed = requests.post(
        f"{live_daphne}/api/auth/password",
        json={"current_password": PASSWORD, "new_password": "another sturdy phrase 7"},
        headers=headers,
        timeout=10,
    )
    # then
    assert changed.status_code == 204
    assert _refresh(live_daphne, body["refresh"]).status_code == 401
    login = requests.post(
        f"{live_daphne}/api/auth/login",
        json={"email": "nia@example.com", "password": "another sturdy phrase 7"},
        timeout=10,
    )
    assert login.status_code == 200


def test_deactivated_user_tokens_stop_working(live_daphne):
    body = _register(live_daphne)
    user = User.objects.get(pk=body["user"]["id"])
    assert _me(live_daphne, body["access"]).status_code == 200  # its signature now known
    # when
    user_deactivate(user=user)
    # then
    me = _me(live_daphne, body["access"])
    assert me.status_code == 401
    assert _error_code(me) == "token_invalid"
    refresh = _refresh(live_daphne, body["refresh"])
    assert refresh.status_code == 401
    assert _error_code(refresh) == "token_invalid"


def test_deactivated_user_refresh_is_refused_even_without_revocation(live_daphne):
    body = _register(live_daphne)
    # given: deactivated behind the services' back (e.g. straight in the database)
    User.objects.filter(pk=body["user"]["id"]).update(is_active=False)
    # when
    response = _refresh(live_daphne, body["refresh"])
    # then
    assert response.status_code == 401
    assert _error_code(response) == "token_invalid"


def test_deleted_user_tokens_are_refused_not_500(live_daphne):
    body = _register(live_daphne)
    assert _me(live_daphne, body["access"]).status_code == 200
    User.objects.filter(pk=body["user"]["id"]).delete()
    refresh = _refresh(live_daphne, body["refresh"])
    assert refresh.status_code == 401
    assert _error_code(refresh) == "token_invalid"
    me = _me(live_daphne, body["access"])
    assert me.status_code == 401
    assert _error_code(me) == "token_invalid"


def test_api_key_is_refused_on_account_endpoints(live_daphne):
    body = _register(live_daphne)
    user = User.objects.get(pk=body["user"]["id"])
    _, raw_key = api_key_create(user=user, name="ci", scopes=["workflows:read"], expires_at=None)
    # when
    response = requests.get(
        f"{live_daphne}/api/auth/me", headers={"X-API-Key": raw_key}, timeout=10
    )
    # then
    assert response.status_code == 403
    assert _error_code(response) == "permission_denied"


def test_auth_endpoints_limit_after_the_fifth_attempt(live_daphne):
    statuses = []
    for _ in range(6):
        response = requests.post(
            f"{live_daphne}/api/auth/login",
            json={"email": "spray@example.com", "password": "wrong"},
            timeout=10,
        )
        statuses.append(response.status_code)
    assert statuses == [401, 401, 401, 401, 401, 429]
    assert _error_code(response) == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60


def test_refresh_blacklist_row_is_written_once(live_daphne):
    body = _register(live_daphne)
    assert _refresh(live_daphne, body["refresh"]).status_code == 200
    jti = refresh_token_decode(body["refresh"])["jti"]
    assert BlacklistedToken.objects.filter(token__jti=jti).count() == 1
