"""The HTTP surface: one error shape, security headers, CORS, request ids, docs and index."""

from __future__ import annotations

import json
import re

import pytest
import requests
from django.test import override_settings
from openapi_spec_validator import validate
from rest_framework.test import APIClient

from tests.conftest import client_for

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"code", "message", "details"}


def _assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == ERROR_KEYS
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return dict(body["error"])


def test_400_malformed_json(anon_client):
    response = anon_client.post(
        "/api/auth/login", data="{not json", content_type="application/json"
    )
    _assert_error(response, 400, "validation_error")


def test_400_wrong_content_type_is_validation_error(anon_client):
    response = anon_client.post("/api/auth/login", data="email=x", content_type="text/plain")
    _assert_error(response, 400, "validation_error")


def test_400_field_errors_are_lists_per_field(anon_client):
    response = anon_client.post("/api/auth/register", {"email": "not-an-email"}, format="json")
    error = _assert_error(response, 400, "validation_error")
    assert isinstance(error["details"]["email"], list)
    assert isinstance(error["details"]["password"], list)


def test_401_not_authenticated_and_token_invalid(anon_client):
    _assert_error(anon_client.get("/api/auth/me"), 401, "not_authenticated")
    anon_client.credentials(HTTP_AUTHORIZATION="Bearer nonsense")
    _assert_error(anon_client.get("/api/auth/me"), 401, "token_invalid")


def test_401_malformed_api_key(anon_client):
    anon_client.credentials(HTTP_X_API_KEY="nonsense")
    _assert_error(anon_client.get("/api/auth/me"), 401, "token_invalid")


def test_404_unknown_api_path_is_json_for_every_method(anon_client):
    for method in ("get", "post", "put", "patch", "delete"):
        response = getattr(anon_client, method)("/api/no-such-thing")
        _assert_error(response, 404, "not_found")
    _assert_error(anon_client.get("/api/auth/me/"), 404, "not_found")


def test_400_more_query_fields_than_django_allows(owner):
    # Django refuses past DATA_UPLOAD_MAX_NUMBER_FIELDS (1,000) when the view reads the query;
    # that was a 500 before.
    query = "&".join(f"k{index}=1" for index in range(1_001))
    for path in ("/api/workflows", "/api/executions"):
        error = _assert_error(client_for(owner).get(f"{path}?{query}"), 400, "validation_error")
        assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in error["message"]
    assert client_for(owner).get("/api/workflows?k0=1&k1=1").status_code == 200


def test_405_method_not_allowed(owner):
    _assert_error(client_for(owner).delete("/api/auth/me"), 405, "method_not_allowed")
    _assert_error(APIClient().get("/api/auth/login"), 405, "method_not_allowed")


def test_413_in_process_from_content_length():
    # ASGI-level limit: exercised in-process through the ASGI wrapper itself.
    import asyncio

    from autoflow.body_limit import BodySizeLimit

    sent: list[dict] = []
    reached: list[bool] = []

    async def app(scope, receive, send):
        reached.append(True)

    async def receive():
        return {"type": "http.request", "body": b"x" * 11, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", b"11")]}
    asyncio.run(BodySizeLimit(app, max_bytes=10)(scope, receive, send))
    assert not reached
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


def test_429_shape():
    client = APIClient(REMOTE_ADDR="10.9.9.9")
    for _ in range(5):
        client.post("/api/auth/login", {"email": "a@b.c", "password": "x"}, format="json")
    response = client.post("/api/auth/login", {"email": "a@b.c", "password": "x"}, format="json")
    _assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_security_headers_and_csp(anon_client):
    response = anon_client.get("/api")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'none'" in csp
    assert "Strict-Transport-Security" not in response  # DEBUG: plain http in development


@override_settings(SECURE_HSTS_SECONDS=31536000, SECURE_HSTS_INCLUDE_SUBDOMAINS=True)
def test_hsts_when_not_debug():
    response = APIClient().get("/api", secure=True)
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_cors_allows_the_configured_origin(anon_client):
    response = anon_client.options(
        "/api/auth/login",
        HTTP_ORIGIN="http://localhost:5173",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,authorization",
    )
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "authorization" in response["Access-Control-Allow-Headers"]
    simple = anon_client.get("/api", HTTP_ORIGIN="http://localhost:5173")
    assert simple["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert "X-Request-ID" in simple["Access-Control-Expose-Headers"]


def test_cors_covers_the_api_only(anon_client):
    api = anon_client.get("/api/schema", HTTP_ORIGIN="http://localhost:5173")
    assert api["Access-Control-Allow-Origin"] == "http://localhost:5173"
    for path in ("/health", "/admin/login/"):
        page = anon_client.get(path, HTTP_ORIGIN="http://localhost:5173")
        assert "Access-Control-Allow-Origin" not in page


def test_cors_refuses_other_origins(anon_client):
    response = anon_client.options(
        "/api/auth/login",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
    )
    assert "Access-Control-Allow-Origin" not in response
    simple = anon_client.get("/api", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in simple


def test_request_id_is_kept_when_sane(anon_client):
    response = anon_client.get("/api", HTTP_X_REQUEST_ID="abc-123.DEF:9")
    assert response["X-Request-ID"] == "abc-123.DEF:9"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "<script>", "é"])
def test_request_id_is_replaced_when_not_sane(anon_client, bad):
    response = anon_client.get("/api", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_request_id_on_errors_and_pages(anon_client):
    assert anon_client.get("/api/nope")["X-Request-ID"]
    assert anon_client.get("/admin/login/")["X-Request-ID"]


def test_api_index_lists_endpoints(anon_client):
    response = anon_client.get("/api")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "AutoFlow"
    assert body["version"]
    endpoints = {(item["method"], item["path"]) for item in body["endpoints"]}
    for expected in [
        ("POST", "/api/auth/register"),
        ("POST", "/api/auth/login"),
        ("POST", "/api/auth/refresh"),
        ("POST", "/api/auth/logout"),
        ("GET", "/api/auth/me"),
        ("PATCH", "/api/auth/me"),
        ("POST", "/api/auth/password"),
        ("GET", "/health"),
        ("GET", "/api/schema"),
    ]:
        assert expected in endpoints
    assert all(item["method"].isupper() for item in body["endpoints"])
    assert not any(item["path"].endswith("/") for item in body["endpoints"])


def test_openapi_schema_is_valid_and_describes_errors(anon_client):
    response = anon_client.get("/api/schema", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate(schema)
    assert schema["openapi"].startswith("3.")
    login = schema["paths"]["/api/auth/login"]["post"]
    assert "requestBody" in login
    assert "401" in login["responses"]
    assert "Error" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        assert not path.endswith("/"), path
        for method, operation in operations.items():
            if method in ("get", "post", "put", "patch", "delete"):
                assert operation["responses"], (method, path)


def test_swagger_ui_is_served_from_the_sidecar_without_cdn(anon_client):
    page = anon_client.get("/api/docs")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()
    assert not re.search(r"""src=["']https?://""", html)
    assert not re.search(r"""href=["']https?://""", html)
    assert "<script>" not in html.replace(" ", "")  # no inline script (CSP script-src 'self')
    script_src = re.findall(r"""<script src=["']([^"']+)["']""", html)
    assert script_src
    for src in script_src:
        asset = anon_client.get(src)
        assert asset.status_code == 200, src


def test_admin_is_mounted(anon_client):
    response = anon_client.get("/admin/login/")
    assert response.status_code == 200


@pytest.mark.e2e
@pytest.mark.usefixtures("transactional_db")
def test_413_through_daphne_from_content_length(live_daphne):
    from django.conf import settings

    body = b"{" + b" " * settings.MAX_REQUEST_BYTES + b"}"
    response = requests.post(
        f"{live_daphne}/api/auth/login",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": "big-1"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.headers["X-Request-ID"] == "big-1"


@pytest.mark.e2e
@pytest.mark.usefixtures("transactional_db")
def test_413_through_daphne_for_a_chunked_body(live_daphne):
    from django.conf import settings

    def chunks():
        chunk = b" " * 65536
        for _ in range(settings.MAX_REQUEST_BYTES // len(chunk) + 2):
            yield chunk

    response = requests.post(
        f"{live_daphne}/api/auth/login",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.e2e
@pytest.mark.usefixtures("transactional_db")
def test_small_chunked_body_passes_through_daphne(live_daphne):
    def chunks():
        yield b'{"email": "x@example.com", '
        yield b'"password": "nope"}'

    response = requests.post(
        f"{live_daphne}/api/auth/login",
        data=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.e2e
@pytest.mark.usefixtures("transactional_db")
def test_json_log_line_per_request(live_daphne):
    registered = requests.post(
        f"{live_daphne}/api/auth/register",
        json={"email": "log@example.com", "password": "a sturdy passphrase 42", "name": "L"},
        timeout=10,
    ).json()
    written_before = len(live_daphne.log_text())  # the server is shared with other tests
    response = requests.get(
        f"{live_daphne}/api/auth/me",
        headers={"Authorization": f"Bearer {registered['access']}", "X-Request-ID": "log-me-1"},
        timeout=10,
    )
    assert response.status_code == 200
    # One line for the request, and it is JSON: daphne's own access log is off in production.
    # (daphne writes its line before the response leaves, and its output is unbuffered.)
    written = live_daphne.log_text()[written_before:]
    about_it = [raw for raw in written.splitlines() if "/api/auth/me" in raw]
    assert len(about_it) == 1, about_it
    line = json.loads(about_it[0])
    assert line["event"] == "request"
    assert line["request_id"] == "log-me-1"
    assert line["method"] == "GET"
    assert line["path"] == "/api/auth/me"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], (int, float))
    assert line["user_id"] == registered["user"]["id"]
    assert line["level"] == "info"
    assert line["timestamp"]


def test_django_own_errors_under_api_are_json_too():
    response = APIClient().get("/api/auth/me", HTTP_HOST="evil.example")
    _assert_error(response, 400, "validation_error")
    page = APIClient().get("/admin/login/", HTTP_HOST="evil.example")
    assert page.status_code == 400
    assert not page["Content-Type"].startswith("application/json")
