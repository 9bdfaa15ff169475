"""Access tokens: the signature is checked once per process, the expiry on every use."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken
from rest_framework_simplejwt.utils import aware_utcnow

from accounts import tokens
from accounts.models import User
from accounts.tokens import access_token_verify
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens `access_token_verify` decoded and checked in full."""
    checked: list[str] = []

    class Counted(AccessToken):
        def __init__(self, token: Any = None, verify: bool = True) -> None:
            checked.append(token.decode() if isinstance(token, bytes) else str(token))
            super().__init__(token, verify=verify)

    monkeypatch.setattr(tokens, "AccessToken", Counted)
    return checked


def _token(user: User, lifetime: timedelta) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=lifetime)
    return str(token)


def test_a_token_is_verified_once_and_refused_once_expired(
    owner: User, verifications: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _token(owner, timedelta(minutes=1))
    client = client_for(None)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert [client.get("/api/auth/me").status_code for _ in range(3)] == [200] * 3
    assert verifications == [raw]

    later = aware_utcnow() + timedelta(minutes=2)
    monkeypatch.setattr(tokens, "aware_utcnow", lambda: later)
    expired = client.get("/api/auth/me")
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == "token_invalid"
    with pytest.raises(TokenError):
        access_token_verify(raw)


def test_a_token_unlike_a_known_one_is_checked_in_full(
    owner: User, verifications: list[str]
) -> None:
    raw = _token(owner, timedelta(minutes=5))
    assert access_token_verify(raw)["user_id"] == str(owner.pk)
    assert access_token_verify(raw.encode()) is access_token_verify(raw)  # DRF's bytes, WS text
    head, payload, signature = raw.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"

    with pytest.raises(TokenError):
        access_token_verify(forged)
    with pytest.raises(TokenError):
        access_token_verify(forged)  # a refused token is not remembered either
    assert verifications == [raw, forged, forged]
