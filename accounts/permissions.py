"""Scope checks for API keys; JWT-only endpoints refuse keys outright."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey
from autoflow.exceptions import PermissionDeniedError, ScopeMissing

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def required_scope(view: Any, method: str) -> str | None:
    """The scope a view needs for `method`: `scopes = {"read": ..., "write": ...}` on the view."""
    scopes: dict[str, str] = getattr(view, "scopes", {})
    action = getattr(view, "action", None)
    if action and action in scopes:
        return scopes[action]
    return scopes.get("read" if method in READ_METHODS else "write")


class HasRequiredScope(BasePermission):
    """An API key passes only with the view's scope; a view without scopes is JWT-only."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not isinstance(request.auth, ApiKey):
            return True
        scope = required_scope(view, request.method or "GET")
        if scope is None:
            raise PermissionDeniedError("This endpoint accepts a JWT only, not an API key.")
        if not request.auth.has_scope(scope):
            raise ScopeMissing(f"The API key needs the {scope} scope.", details={"scope": scope})
        return True
