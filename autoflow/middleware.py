"""Request-scoped middleware: request ids and access logs, and JSON errors under /api/."""

from __future__ import annotations

import logging
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject, empty

from autoflow.exceptions import error_json_response, translate_exception

logger = structlog.get_logger("autoflow.request")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def incoming_request_id(value: str | None) -> str:
    """Keep a caller's request id when it is sane, else make one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return uuid.uuid4().hex


def _resolved_user_id(request: HttpRequest) -> str | None:
    """The signed-in user's id if the request already knows it.

    A session user nobody looked at stays unresolved: a log line must not query the database
    (which may be the very thing that is down).
    """
    user: Any = getattr(request, "user", None)
    if isinstance(user, SimpleLazyObject):
        wrapped = user._wrapped
        if wrapped is empty:
            return None
        user = wrapped
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


GetResponse = Callable[[HttpRequest], Any]


class AsyncCapableMiddleware(ABC):
    """Base for middleware that runs in whichever mode the next layer runs.

    Under daphne the webhook view is async: one sync-only middleware in the chain would push
    every request (and the view) through a thread hop, so ours work both ways.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return self.handle(request, self.get_response)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        return await self.ahandle(request)

    @abstractmethod
    def handle(self, request: HttpRequest, get_response: GetResponse) -> HttpResponse:
        """Process one request in a sync chain."""

    @abstractmethod
    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        """Process one request in an async chain."""


class RequestIdMiddleware(AsyncCapableMiddleware):
    """Give every request an id, put it in every log line and on the response, log once."""

    def _begin(self, request: HttpRequest) -> str:
        request_id = incoming_request_id(request.headers.get("X-Request-ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        return request_id

    def _end(
        self, request: HttpRequest, response: HttpResponse, request_id: str, started: float
    ) -> HttpResponse:
        response["X-Request-ID"] = request_id
        level = logging.WARNING if response.status_code >= 500 else logging.INFO
        if logger.isEnabledFor(level):
            logger.log(
                level,
                "request",
                method=request.method,
                path=request.path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                user_id=_resolved_user_id(request),
            )
        structlog.contextvars.clear_contextvars()
        return response

    def handle(self, request: HttpRequest, get_response: GetResponse) -> HttpResponse:
        request_id = self._begin(request)
        started = time.perf_counter()
        return self._end(request, get_response(request), request_id, started)

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        request_id = self._begin(request)
        started = time.perf_counter()
        return self._end(request, await self.get_response(request), request_id, started)


class StaticFilesMiddleware(AsyncCapableMiddleware):
    """WhiteNoise, consulted only for paths under STATIC_URL.

    WhiteNoise's own middleware is sync-only and looks every path up; this keeps its serving
    (compression, caching headers) for static files and lets every other request through
    in the mode it arrived in.
    """

    def __init__(self, get_response: GetResponse) -> None:
        from whitenoise.middleware import WhiteNoiseMiddleware

        super().__init__(get_response)
        self.whitenoise = WhiteNoiseMiddleware(get_response)
        self.prefix = "/" + (settings.STATIC_URL or "/static/").lstrip("/")

    def _static_response(self, request: HttpRequest) -> HttpResponse | None:
        whitenoise = self.whitenoise
        path = request.path_info
        found = whitenoise.find_file(path) if whitenoise.autorefresh else whitenoise.files.get(path)
        return None if found is None else whitenoise.serve(found, request)

    def handle(self, request: HttpRequest, get_response: GetResponse) -> HttpResponse:
        if request.path_info.startswith(self.prefix):
            response = self._static_response(request)
            if response is not None:
                return response
        return get_response(request)

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(self.prefix):
            # File lookups touch the disk: off the event loop.
            response = await sync_to_async(self._static_response)(request)
            if response is not None:
                return response
        return await self.get_response(request)


_DJANGO_ERRORS = {
    400: ("validation_error", "The request is not valid."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You may not do this."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    413: ("payload_too_large", "The request body is too large."),
    429: ("rate_limited", "Too many requests; retry later."),
    503: ("service_unavailable", "A service AutoFlow depends on is unavailable; retry shortly."),
    500: ("internal_error", "An unexpected error occurred."),
}


class ApiErrorMiddleware(AsyncCapableMiddleware):
    """Never an HTML error page under /api/: render what escaped the views as JSON."""

    def handle(self, request: HttpRequest, get_response: GetResponse) -> HttpResponse:
        return self._converted(request, get_response(request))

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        return self._converted(request, await self.get_response(request))

    def _converted(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            request.path.startswith("/api")
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            # Django answered on its own before any view ran (a disallowed Host, a CSRF
            # failure): keep the status, give it the one error shape.
            code, message = _DJANGO_ERRORS.get(response.status_code, _DJANGO_ERRORS[500])
            converted = error_json_response(code, message, response.status_code)
            for name in ("Retry-After", "Allow"):
                if name in response:
                    converted[name] = response[name]
            return converted
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith("/api"):
            return None
        try:
            code, message, status, details, headers = translate_exception(exception)
        except Exception:
            logger.exception("unhandled error", path=request.path)
            return error_json_response("internal_error", "An unexpected error occurred.", 500)
        response = error_json_response(code, message, status, details)
        for name, value in headers.items():
            response[name] = value
        return response
