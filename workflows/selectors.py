"""Permission-scoped reads of workflows: what a caller may not see is simply not found."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from accounts.models import User
from autoflow.exceptions import NotFound, PermissionDeniedError
from autoflow.statements import get_one
from workflows.models import Workflow, WorkflowVersion


def workflow_list_for_user(*, user: User) -> QuerySet[Workflow]:
    """Workflows the caller may see: their own and public ones (admins: all)."""
    queryset = Workflow.objects.select_related("owner")
    if user.is_staff:
        return queryset
    return queryset.filter(Q(owner=user) | Q(is_public=True))


def workflow_get_for_user(*, user: User, workflow_id: uuid.UUID | str) -> Workflow:
    """One workflow the caller may see, else `NotFound` (never a 403 that confirms it exists).

    The rule of `workflow_list_for_user`, checked on the row: this runs on every execute, and
    compiling that query (with its join) through the ORM was most of the lookup's cost.
    """
    workflow = get_one(Workflow, "pk", workflow_id)
    if workflow is None or not workflow_can_read(user=user, workflow=workflow):
        raise NotFound("Workflow not found.")
    if workflow.owner_id == user.pk:
        workflow.owner = user  # the caller's own: no query when the owner is read
    return workflow


def workflow_can_read(*, user: User, workflow: Workflow) -> bool:
    """Owners read their own, anyone public ones, admins all (`workflow_list_for_user`)."""
    return user.is_staff or workflow.is_public or workflow.owner_id == user.pk


def workflow_can_write(*, user: User, workflow: Workflow) -> bool:
    """Owners and admins change (and execute) a workflow; readers of a public one may not."""
    return user.is_staff or workflow.owner_id == user.pk


def workflow_get_for_write(*, user: User, workflow_id: uuid.UUID | str) -> Workflow:
    """A workflow the caller may change or execute: 404 when invisible, 403 when read-only."""
    workflow = workflow_get_for_user(user=user, workflow_id=workflow_id)
    if not workflow_can_write(user=user, workflow=workflow):
        raise PermissionDeniedError("You may read this public workflow but not change or run it.")
    return workflow


ORDERING_FIELDS = ("name", "created_at", "updated_at")
DEFAULT_ORDERING = "-updated_at"


def workflows_with_tags(queryset: QuerySet[Workflow], tags: list[str]) -> QuerySet[Workflow]:
    """Workflows carrying every tag in `tags`, on PostgreSQL and SQLite alike."""
    if not tags:
        return queryset
    if connection.vendor == "postgresql":
        # `tags @> '["a","b"]'`: one containment test the GIN index on tags answers.
        return queryset.filter(tags__contains=tags)
    # SQLite has no JSON containment operator: test each tag against json_each.
    table = Workflow._meta.db_table
    for index, tag in enumerate(tags):
        alias = f"_has_tag_{index}"
        # The table name is ours and the tag is a bound parameter.
        condition = RawSQL(  # noqa: S611
            f'EXISTS (SELECT 1 FROM json_each("{table}"."tags") WHERE json_each.value = %s)',  # noqa: S608
            (tag,),
            output_field=BooleanField(),
        )
        queryset = queryset.alias(**{alias: condition}).filter(**{alias: True})
    return queryset


def workflow_list(
    *,
    user: User,
    search: str = "",
    tags: list[str] | None = None,
    is_public: bool | None = None,
    active: bool | None = None,
    owner_id: uuid.UUID | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    ordering: str = DEFAULT_ORDERING,
) -> QuerySet[Workflow]:
    """The workflows the caller may see, filtered and ordered as the list endpoint offers."""
    if owner_id is not None and (user.is_staff or owner_id == user.pk):
        # Everything of one's own is visible: a plain owner filter lets the planner walk
        # the (owner, updated_at) index instead of merging it with the public rows.
        queryset = Workflow.objects.select_related("owner").filter(owner_id=owner_id)
    elif owner_id is not None:
        queryset = workflow_list_for_user(user=user).filter(owner_id=owner_id)
    else:
        queryset = workflow_list_for_user(user=user)
    if is_public is not None:
        queryset = queryset.filter(is_public=is_public)
    if active is not None:
        queryset = queryset.filter(active=active)
    if created_after is not None:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=created_before)
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(description__icontains=search))
    queryset = workflows_with_tags(queryset, list(tags or []))
    if ordering.lstrip("-") not in ORDERING_FIELDS:
        raise ValueError(f"Unknown ordering {ordering!r}")
    # The id breaks ties so pages never repeat or skip a row.
    return queryset.order_by(ordering, "-id" if ordering.startswith("-") else "id")


def workflow_version_list(*, workflow: Workflow) -> QuerySet[WorkflowVersion]:
    """A workflow's saved versions, newest first."""
    return workflow.versions.select_related("created_by").order_by("-version")


def workflow_version_get(*, workflow: Workflow, version_number: int) -> WorkflowVersion:
    """One saved version of a workflow the caller may see, else `NotFound`."""
    version = workflow_version_list(workflow=workflow).filter(version=version_number).first()
    if version is None:
        raise NotFound("Version not found.")
    return version
