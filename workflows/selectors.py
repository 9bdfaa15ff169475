"""Permission-scoped reads of workflows: what a caller may not see is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import Q, QuerySet

from accounts.models import User
from autoflow.exceptions import NotFound, PermissionDeniedError
from workflows.models import Workflow


def workflow_list_for_user(*, user: User) -> QuerySet[Workflow]:
    """Workflows the caller may see: their own and public ones (admins: all)."""
    queryset = Workflow.objects.select_related("owner")
    if user.is_staff:
        return queryset
    return queryset.filter(Q(owner=user) | Q(is_public=True))


def workflow_get_for_user(*, user: User, workflow_id: uuid.UUID | str) -> Workflow:
    """One workflow the caller may see, else `NotFound` (never a 403 that confirms it exists)."""
    workflow = workflow_list_for_user(user=user).filter(pk=workflow_id).first()
    if workflow is None:
        raise NotFound("Workflow not found.")
    return workflow


def workflow_can_write(*, user: User, workflow: Workflow) -> bool:
    """Owners and admins change (and execute) a workflow; readers of a public one may not."""
    return user.is_staff or workflow.owner_id == user.pk


def workflow_get_for_write(*, user: User, workflow_id: uuid.UUID | str) -> Workflow:
    """A workflow the caller may change or execute: 404 when invisible, 403 when read-only."""
    workflow = workflow_get_for_user(user=user, workflow_id=workflow_id)
    if not workflow_can_write(user=user, workflow=workflow):
        raise PermissionDeniedError("You may read this public workflow but not change or run it.")
    return workflow
