"""The middleware chain under ASGI: stock hooks run on the loop, I/O still runs in a thread."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import SyncToAsync, async_to_sync
from csp.constants import NONCE
from csp.decorators import csp_exempt, csp_update
from csp.utils import build_policy
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.test import AsyncClient, RequestFactory, override_settings

from accounts.models import User
from autoflow import loop_middleware
from autoflow.loop_middleware import CSPMiddleware

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


def _csp_of(
    response: HttpResponseBase, *, nonce: bool = False, path: str = "/api"
) -> tuple[HttpResponseBase, str]:
    request = RequestFactory().get(path)
    middleware = CSPMiddleware(lambda _request: response)
    middleware.process_request(request)
    used = str(request.csp_nonce) if nonce else ""  # type: ignore[attr-defined]
    return middleware.process_response(request, response), used


def test_the_settings_policy_is_built_once_and_follows_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[bool] = []
    original = loop_middleware.build_policy

    def counted(*args: Any, **options: Any) -> str:
        built.append(bool(options.get("report_only")))
        return original(*args, **options)

    monkeypatch.setattr(loop_middleware, "build_policy", counted)
    loop_middleware.settings_policies.cache_clear()
    first, _ = _csp_of(HttpResponse())
    second, _ = _csp_of(HttpResponse())
    assert first["Content-Security-Policy"] == second["Content-Security-Policy"]
    assert first["Content-Security-Policy"] == build_policy()  # django-csp's own text
    assert "Content-Security-Policy-Report-Only" not in first
    assert built == [False, True]  # once, for both responses

    with override_settings(
        CONTENT_SECURITY_POLICY={"DIRECTIVES": {"default-src": ["'none'"]}},
        CONTENT_SECURITY_POLICY_REPORT_ONLY={"DIRECTIVES": {"img-src": ["'self'"]}},
    ):
        changed, _ = _csp_of(HttpResponse())
    assert changed["Content-Security-Policy"] == "default-src 'none'"
    assert "img-src 'self'" in changed["Content-Security-Policy-Report-Only"]
    assert _csp_of(HttpResponse())[0]["Content-Security-Policy"] == first["Content-Security-Policy"]


def test_a_nonce_or_a_view_override_is_left_to_django_csp() -> None:
    with override_settings(
        CONTENT_SECURITY_POLICY={"DIRECTIVES": {"script-src": ["'self'", NONCE]}}
    ):
        with_nonce, nonce = _csp_of(HttpResponse(), nonce=True)
        without, _ = _csp_of(HttpResponse())
    assert f"script-src 'self' 'nonce-{nonce}'" in with_nonce["Content-Security-Policy"]
    assert "script-src 'self';" in f"{without['Content-Security-Policy']};"

    request = RequestFactory().get("/")
    updated = csp_update({"img-src": ["https://images.example"]})(lambda _r: HttpResponse())
    assert "https://images.example" in _csp_of(updated(request))[0]["Content-Security-Policy"]
    exempt = csp_exempt()(lambda _r: HttpResponse())
    assert "Content-Security-Policy" not in _csp_of(exempt(request))[0]
    already = HttpResponse(headers={"Content-Security-Policy": "sandbox"})
    assert _csp_of(already)[0]["Content-Security-Policy"] == "sandbox"

    with override_settings(
        CONTENT_SECURITY_POLICY={
            "EXCLUDE_URL_PREFIXES": ["/admin"],
            "DIRECTIVES": {"default-src": ["'self'"]},
        }
    ):
        assert "Content-Security-Policy" not in _csp_of(HttpResponse(), path="/admin/x")[0]
        assert "default-src 'self'" in _csp_of(HttpResponse())[0]["Content-Security-Policy"]
