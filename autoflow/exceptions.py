"""One error shape for every API error: `{"error": {"code", "message", "details"}}`.

Services raise `AppError` subclasses; DRF's and Django's own exceptions are translated by
`api_exception_handler` so a client only ever sees SPEC.md's closed list of codes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

logger = logging.getLogger(__name__)


class AppError(drf.APIException):
    """Base of every error AutoFlow raises on purpose."""

    status_code = 400
    code = "validation_error"
    default_message = "The request is not valid."

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        self.message = message or self.default_message
        self.details = {} if details is None else details
        super().__init__(detail=self.message, code=self.code)


class ValidationFailed(AppError):
    code = "validation_error"


class GraphInvalid(AppError):
    code = "graph_invalid"
    default_message = "The workflow graph is not valid."


class VersionRequired(AppError):
    code = "version_required"
    default_message = "Send the version you read, as `version` in the body or an If-Match header."


class InvalidCredentials(AppError):
    status_code = 401
    code = "invalid_credentials"
    default_message = "The email or password is not correct."


class TokenInvalid(AppError):
    status_code = 401
    code = "token_invalid"
    default_message = "The token or API key is not valid."


class SignatureInvalid(AppError):
    status_code = 401
    code = "signature_invalid"
    default_message = "The webhook signature is missing or wrong."


class PermissionDeniedError(AppError):
    status_code = 403
    code = "permission_denied"
    default_message = "You may not do this."


class ScopeMissing(AppError):
    status_code = 403
    code = "scope_missing"
    default_message = "The API key lacks a scope this endpoint needs."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    default_message = "Not found."


class VersionConflict(AppError):
    status_code = 409
    code = "version_conflict"
    default_message = "The object changed since you read it."


class IdempotencyConflict(AppError):
    status_code = 409
    code = "idempotency_conflict"
    default_message = "This Idempotency-Key was used with a different request."


class InvalidState(AppError):
    status_code = 409
    code = "invalid_state"
    default_message = "The object is not in a state that allows this."


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class ExecutionFailed(AppError):
    status_code = 422
    code = "execution_failed"
    default_message = "The execution failed."


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"
    default_message = "Too many requests; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 60) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, details={"retry_after": self.retry_after})


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"
    default_message = "A service AutoFlow depends on is unavailable; retry shortly."


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Build the one error body."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_json_response(code: str, message: str, status: int, details: Any = None) -> JsonResponse:
    """Render an error outside DRF (middleware, plain Django views) in the same shape."""
    return JsonResponse(error_body(code, message, details), status=status)


def _flatten_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _flatten_message(detail[0])
    if isinstance(detail, dict) and detail:
        return _flatten_message(next(iter(detail.values())))
    return str(detail)


def _validation_details(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(field): _as_messages(messages) for field, messages in detail.items()}
    return {"non_field_errors": _as_messages(detail)}


def _as_messages(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(k): _as_messages(v) for k, v in detail.items()}
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [str(item) for item in detail]
        return [_as_messages(item) for item in detail]
    return [str(detail)]


def translate_exception(exc: Exception) -> tuple[str, str, int, Any, dict[str, str]]:
    """Map any exception a request can raise to (code, message, status, details, headers)."""
    if isinstance(exc, AppError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
        return exc.code, exc.message, exc.status_code, exc.details, headers
    if isinstance(exc, (InvalidToken, TokenError)):
        return "token_invalid", "The token is invalid or expired.", 401, {}, {}
    if isinstance(exc, drf.ValidationError):
        message = _flatten_message(exc.detail) or "Invalid input."
        return "validation_error", message, 400, _validation_details(exc.detail), {}
    if isinstance(exc, drf.ParseError):
        return "validation_error", f"Malformed request body: {exc.detail}", 400, {}, {}
    if isinstance(exc, (drf.UnsupportedMediaType, drf.NotAcceptable)):
        return "validation_error", str(exc.detail), 400, {}, {}
    if isinstance(exc, drf.NotAuthenticated):
        return "not_authenticated", "Authentication credentials were not provided.", 401, {}, {}
    if isinstance(exc, drf.AuthenticationFailed):
        return "token_invalid", str(exc.detail), 401, {}, {}
    if isinstance(exc, RequestDataTooBig):
        return "payload_too_large", PayloadTooLarge.default_message, 413, {}, {}
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        # More query or form fields (or files) than Django's DATA_UPLOAD_MAX_* settings allow.
        return "validation_error", str(exc), 400, {}, {}
    if isinstance(exc, SuspiciousOperation):
        # Django answers these 400 itself; its message may name server-side details.
        logging.getLogger("django.security").warning("suspicious request: %s", exc)
        return "validation_error", "The request was refused as malformed.", 400, {}, {}
    if isinstance(exc, (drf.PermissionDenied, DjangoPermissionDenied)):
        return "permission_denied", "You may not do this.", 403, {}, {}
    if isinstance(exc, (drf.NotFound, Http404)):
        return "not_found", "Not found.", 404, {}, {}
    if isinstance(exc, drf.MethodNotAllowed):
        return "method_not_allowed", str(exc.detail), 405, {}, {}
    if isinstance(exc, drf.Throttled):
        wait = max(1, int(getattr(exc, "wait", None) or 1))
        return (
            "rate_limited",
            "Too many requests; retry later.",
            429,
            {"retry_after": wait},
            {"Retry-After": str(wait)},
        )
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable", exc_info=exc)
        return "service_unavailable", ServiceUnavailable.default_message, 503, {}, {}
    if isinstance(exc, DatabaseError) and "connection" in str(exc).lower():
        logger.warning("database unavailable", exc_info=exc)
        return "service_unavailable", ServiceUnavailable.default_message, 503, {}, {}
    if isinstance(exc, drf.APIException):
        return "validation_error", str(exc.detail), exc.status_code, {}, {}
    raise exc


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF exception handler: every error in the one shape, with the right headers."""
    try:
        code, message, status, details, headers = translate_exception(exc)
    except Exception:  # not ours to translate: Django's 500 handling takes it
        return None
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context) if isinstance(exc, drf.APIException) else None
    extra = dict(response.headers) if response is not None else {}
    extra.pop("Content-Type", None)
    extra.update(headers)
    return Response(error_body(code, message, details), status=status, headers=extra)
