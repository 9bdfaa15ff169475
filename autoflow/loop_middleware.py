"""Django's stock middleware, with the hooks that do no I/O run on the event loop.

Under ASGI, `MiddlewareMixin` runs every `process_request`, `process_view` and
`process_response` in a thread (`sync_to_async`): with the stock chain that is about fifteen
thread hops per request, the first of which starts a thread, though these hooks only read the
request and set headers. Here they run where the request is. A hook that may touch the database
(saving a modified session, loading stored messages) still runs in the thread, as Django would.
In a sync chain (WSGI, the test client) nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from csp.constants import HEADER as CSP_HEADER
from csp.constants import HEADER_REPORT_ONLY as CSP_HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject
from csp.middleware import CSPMiddleware as DjangoCSP
from csp.utils import build_policy
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthentication
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessages
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSession
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware as DjangoXFrameOptions
from django.middleware.common import CommonMiddleware as DjangoCommon
from django.middleware.csrf import CsrfViewMiddleware as DjangoCsrfView
from django.middleware.security import SecurityMiddleware as DjangoSecurity


class OnLoopMixin:
    """Run a `MiddlewareMixin` middleware's hooks inline in an async chain, unless told not to."""

    get_response: Callable[[HttpRequest], Any]
    async_mode: bool

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)  # type: ignore[call-arg]
        process_view = getattr(self, "process_view", None)
        if self.async_mode and process_view is not None and self.view_on_loop():
            # The handler would wrap a sync process_view in sync_to_async; an async one it calls.
            async def process_view_on_loop(*args: Any) -> HttpResponseBase | None:
                result: HttpResponseBase | None = process_view(*args)
                return result

            vars(self)["process_view"] = process_view_on_loop  # shadows the method, per instance

    def view_on_loop(self) -> bool:
        """Whether `process_view` never does I/O."""
        return True

    def request_on_loop(self, request: HttpRequest) -> bool:
        """Whether `process_request` does no I/O for this request."""
        return True

    def response_on_loop(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        """Whether `process_response` does no I/O for this request and response."""
        return True

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase | None = None
        process_request = getattr(self, "process_request", None)
        if process_request is not None:
            if self.request_on_loop(request):
                response = process_request(request)
            else:
                response = await sync_to_async(process_request, thread_sensitive=True)(request)
        response = response or await self.get_response(request)
        process_response = getattr(self, "process_response", None)
        if process_response is not None:
            if self.response_on_loop(request, response):
                response = process_response(request, response)
            else:
                response = await sync_to_async(process_response, thread_sensitive=True)(
                    request, response
                )
        return response


class SecurityMiddleware(OnLoopMixin, DjangoSecurity):
    """HTTPS redirect and security headers: the request and settings only."""


# What django-csp's decorators set on a response to change or drop its policy.
CSP_RESPONSE_OVERRIDES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_exempt",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt_ro",
)


class CSPMiddleware(OnLoopMixin, DjangoCSP):
    """A lazy nonce and the policy header: the request and settings only.

    django-csp builds the header afresh for every response (deep copies of the settings'
    policy, then its text: ~25 µs). A response whose policy no view changed, to a request that
    asked for no nonce, gets the settings' policy built once (`settings_policies`); any other
    is django-csp's to build.
    """

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        policies = settings_policies()
        if (
            policies is None
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in CSP_RESPONSE_OVERRIDES)
            or (settings.DEBUG and response.status_code in (404, 500))
        ):
            return super().process_response(request, response)
        for header, policy in policies:
            if policy and header not in response:
                response[header] = policy
        # As django-csp does: a nonce asked for after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response


@functools.cache
def settings_policies() -> tuple[tuple[str, str], ...] | None:
    """The headers of the settings' policies as they stand; None when the settings exclude URL
    prefixes (then each response is django-csp's to judge)."""
    configured = (
        getattr(settings, "CONTENT_SECURITY_POLICY", None) or {},
        getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None) or {},
    )
    if any(policy.get("EXCLUDE_URL_PREFIXES") for policy in configured):
        return None
    return ((CSP_HEADER, build_policy()), (CSP_HEADER_REPORT_ONLY, build_policy(report_only=True)))


@receiver(setting_changed)
def _policy_settings_changed(*, setting: str, **_: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        settings_policies.cache_clear()


class SessionMiddleware(OnLoopMixin, DjangoSession):
    """The session is loaded lazily (in whatever thread first reads it) and saved in a thread."""

    def response_on_loop(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        session = getattr(request, "session", None)
        saves = settings.SESSION_SAVE_EVERY_REQUEST or getattr(session, "modified", False)
        return session is None or not saves


class CommonMiddleware(OnLoopMixin, DjangoCommon):
    """User-agent and host checks, URL resolution for slash redirects: no I/O."""


class CsrfViewMiddleware(OnLoopMixin, DjangoCsrfView):
    """Token checks read the request and its cookies, unless the token lives in the session."""

    def view_on_loop(self) -> bool:
        return not settings.CSRF_USE_SESSIONS

    def request_on_loop(self, request: HttpRequest) -> bool:
        return not settings.CSRF_USE_SESSIONS

    def response_on_loop(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        return not settings.CSRF_USE_SESSIONS


class AuthenticationMiddleware(OnLoopMixin, DjangoAuthentication):
    """Only sets the lazy `request.user`; resolving it is the reader's business."""


class MessageMiddleware(OnLoopMixin, DjangoMessages):
    """Storing messages may first load the stored ones (from the session): then in a thread."""

    def response_on_loop(self, request: HttpRequest, response: HttpResponseBase) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or not (storage.used or storage.added_new)


class XFrameOptionsMiddleware(OnLoopMixin, DjangoXFrameOptions):
    """One response header."""
