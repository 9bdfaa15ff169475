"""System endpoints: `/health`, `/api` (index), and the JSON 404 for unknown API paths."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from autoflow.exceptions import NotFound
from autoflow.health import health_report

API_VERSION = "1.0.0"


class HealthView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    @extend_schema(
        responses={
            200: inline_serializer(
                "Health",
                {"status": serializers.CharField(), "checks": serializers.JSONField()},
            ),
            503: inline_serializer(
                "HealthDown",
                {"status": serializers.CharField(), "checks": serializers.JSONField()},
            ),
        },
        summary="Dependency health (503 only when the database is unreachable)",
    )
    def get(self, request: Request) -> Response:
        status, checks = health_report()
        body = {"status": status, "checks": checks}
        return Response(body, status=503 if status == "down" else 200)


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found.extend(_walk(entry.url_patterns, prefix + str(entry.pattern)))
        elif isinstance(entry, URLPattern):
            found.append((prefix + str(entry.pattern), entry.callback))
    return found


def _display_path(pattern: str) -> str:
    for converter in ("uuid:", "int:", "str:", "slug:", "path:"):
        pattern = pattern.replace(f"<{converter}", "{")
    return "/" + pattern.replace("<", "{").replace(">", "}").lstrip("^").rstrip("$")


def api_endpoints() -> list[dict[str, str]]:
    """Every API endpoint and method, read from the URL conf so none can be forgotten."""
    endpoints: list[dict[str, str]] = []
    for pattern, callback in _walk(get_resolver().url_patterns):
        view_class = getattr(callback, "cls", None)
        path = _display_path(pattern)
        if view_class is None or not (path.startswith("/api") or path == "/health"):
            continue
        if "{path}" in path or path.endswith(".*"):
            continue
        actions = getattr(callback, "actions", None)
        methods = (
            sorted(method.upper() for method in actions)
            if actions
            else sorted(
                method.upper()
                for method in view_class.http_method_names
                if method not in ("options", "head", "trace") and hasattr(view_class, method)
            )
        )
        endpoints.extend({"method": method, "path": path} for method in methods)
    return endpoints


class ApiIndexView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses=inline_serializer(
            "ApiIndex",
            {
                "name": serializers.CharField(),
                "version": serializers.CharField(),
                "endpoints": serializers.ListField(child=serializers.DictField()),
            },
        ),
        summary="API name, version and endpoint list",
    )
    def get(self, request: Request) -> Response:
        return Response({"name": "AutoFlow", "version": API_VERSION, "endpoints": api_endpoints()})


class ApiNotFoundView(APIView):
    """Unknown paths under /api answer JSON, not Django's HTML page."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []
    schema = None

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        self.http_method_names = [*APIView.http_method_names]
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: Request, path: str = "") -> Response:
        raise NotFound()

    post = put = patch = delete = get
