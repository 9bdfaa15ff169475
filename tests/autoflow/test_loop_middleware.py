"""The middleware chain under ASGI: stock hooks run on the loop, I/O still runs in a thread."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from django.test import AsyncClient

from accounts.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-admin-password-1"


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function run through `sync_to_async` while the test runs."""
    hops: list[str] = []
    original = SyncToAsync.__call__

    async def counting(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    return hops


def test_no_middleware_hook_hops_to_a_thread(thread_hops: list[str]) -> None:
    response = async_to_sync(AsyncClient().get)("/api")

    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran
    assert response["X-Frame-Options"] == "DENY"  # XFrameOptionsMiddleware ran
    assert "Content-Security-Policy" in response  # CSPMiddleware ran
    assert thread_hops  # the sync view and Django's request signals still hop
    assert [hop for hop in thread_hops if ".process_" in hop] == []


def test_admin_sign_in_saves_the_session_in_a_thread(admin_user: User) -> None:
    admin_user.set_password(PASSWORD)
    admin_user.save()
    client = AsyncClient()

    signed_in = async_to_sync(client.post)(
        "/admin/login/?next=/admin/",
        {"username": admin_user.email, "password": PASSWORD, "next": "/admin/"},
    )
    index = async_to_sync(client.get)("/admin/")

    assert signed_in.status_code == 302, signed_in.content[:500]
    assert signed_in["Location"] == "/admin/"
    assert index.status_code == 200
    assert admin_user.email.encode() in index.content or b"Ada" in index.content
