"""Rate limits over the shared cache (django-ratelimit's atomic counters), failing open.

Counters live in the cache (Redis in production), so limits hold across processes. A down
Redis must never turn a request into an error: the counter read is guarded and logged.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import structlog
from django.conf import settings
from django.http import HttpRequest
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from autoflow.exceptions import RateLimited

if TYPE_CHECKING:
    from rest_framework.views import APIView

logger = structlog.get_logger(__name__)


def client_ip(request: HttpRequest) -> str:
    """Return the client address, trusting only `TRUSTED_PROXY_COUNT` proxies' X-Forwarded-For."""
    remote = request.META.get("REMOTE_ADDR") or "0.0.0.0"  # noqa: S104 - a key, not a bind
    trusted = settings.TRUSTED_PROXY_COUNT
    if trusted <= 0:
        return remote
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part
    ]
    # Each trusted proxy appends the address it saw; the client is the one the outermost
    # trusted proxy saw, and anything before it may be forged by the client.
    hops = [*forwarded, remote]
    index = len(hops) - 1 - trusted
    return hops[max(index, 0)]


def check_rate(request: HttpRequest, *, group: str, key: str, rate: str) -> None:
    """Count one hit for `key` in `group`; raise `RateLimited` once past `rate`."""
    hashed_key = hashlib.sha256(key.encode()).hexdigest()
    try:
        usage = get_usage(
            request,
            group=group,
            key=lambda _group, _request: hashed_key,
            rate=rate,
            increment=True,
        )
    except Exception:
        logger.warning("rate limit counter unavailable; failing open", group=group)
        return
    if usage is None:
        logger.warning("rate limit counter unavailable; failing open", group=group)
        return
    if usage["should_limit"]:
        raise RateLimited(retry_after=max(1, usage["time_left"]))


class GeneralRateThrottle(BaseThrottle):
    """`RATE_LIMIT_GENERAL` for every API view, per user (per IP when anonymous).

    Views with a limit of their own (auth, refresh, webhooks) set `rate_limit_group`
    and are skipped here.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        if getattr(view, "rate_limit_group", None):
            return True
        user = request.user
        key = f"user:{user.pk}" if user and user.is_authenticated else f"ip:{client_ip(request)}"
        check_rate(request, group="general", key=key, rate=settings.RATE_LIMIT_GENERAL)
        return True
