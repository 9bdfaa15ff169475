"""`GET /metrics`: Prometheus text, behind a bearer token or restricted to loopback clients."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from autoflow.exceptions import NotFound, TokenInvalid
from autoflow.ratelimit import client_ip
from autoflow.schema import error_responses
from ops.metrics import metrics_content_type, metrics_text


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_access_check(request: Request) -> None:
    """Allow a scrape with the right bearer token, or from loopback when no token is set."""
    token = settings.METRICS_TOKEN
    if not token:
        if not _is_loopback(client_ip(request._request)):
            # 404, not 403: an unconfigured endpoint should not announce itself.
            raise NotFound("Not found.")
        return
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        raise NotAuthenticated("Send Authorization: Bearer <METRICS_TOKEN>.")
    scheme, _, sent = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip(), token):
        raise TokenInvalid("The metrics token is wrong.")


class MetricsView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    throttle_classes: list[Any] = []

    def get_authenticate_header(self, request: Request) -> str:
        # Without it DRF turns a 401 into a 403.
        return 'Bearer realm="metrics"'

    @extend_schema(
        responses={
            200: OpenApiResponse(OpenApiTypes.STR, description="Prometheus text format"),
            **error_responses(401, 404),
        },
        summary="Prometheus metrics (METRICS_TOKEN bearer, or loopback only when unset)",
    )
    def get(self, request: Request) -> HttpResponse:
        metrics_access_check(request)
        return HttpResponse(metrics_text(), content_type=metrics_content_type())
