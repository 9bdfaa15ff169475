"""Reads scoped to what the caller may see."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from accounts.models import ApiKey, User
from autoflow.exceptions import NotFound


def api_key_list(*, user: User) -> QuerySet[ApiKey]:
    """The caller's keys that are not revoked, newest first."""
    return ApiKey.objects.filter(user=user, revoked_at__isnull=True).order_by("-created_at")


def api_key_get_for_user(*, user: User, api_key_id: uuid.UUID | str) -> ApiKey:
    """One of the caller's live keys, else not found."""
    api_key = api_key_list(user=user).filter(pk=api_key_id).first()
    if api_key is None:
        raise NotFound()
    return api_key
