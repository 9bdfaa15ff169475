"""Django's stock middleware, with the hooks that do no I/O run on the event loop.

Under ASGI, `MiddlewareMixin` runs every `process_request`, `process_view` and
`process_response` in a thread (`sync_to_async`): with the stock chain that is about fifteen
thread hops per request, the first of which starts a thread, though these hooks only read the
request and set headers. Here they run where the request is. A hook that may touch the database
(saving a modified session, loading stored messages) still runs in the thread, as Django would.
In a sync chain (WSGI, the test client) nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from csp.middleware import CSPMiddleware as DjangoCSP
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as DjangoAuthentication
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessages
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSession
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


class CSPMiddleware(OnLoopMixin, DjangoCSP):
    """A lazy nonce and the policy header: the request and settings only."""


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
