"""Workflow writes: create, update under optimistic locking, delete, duplicate, restore.

Every write goes through `_write_version`, the one place a workflow row and its version row
are stored together, so a `workflow:update` event can be added there later.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from autoflow.exceptions import NotFound, VersionConflict
from workflows.credentials import credential_types_for_owner
from workflows.graph import validate_graph
from workflows.models import Workflow, WorkflowVersion

COPY_SUFFIX = " (copy)"
NAME_MAX_LENGTH = 200
# Fields a PUT/PATCH may change; `version` is the lock, not a field.
EDITABLE_FIELDS = ("name", "description", "graph", "tags", "is_public", "active")

# Called after commit with (workflow, event), event one of "created" | "updated" | "activated"
# | "deactivated" | "deleted". Apps that react to workflow changes (triggers arm webhooks and
# schedules) register here from their AppConfig.ready(), so workflows imports none of them.
workflow_change_listeners: list[Callable[[Workflow, str], None]] = []


def _notify_on_commit(workflow: Workflow, event: str) -> None:
    def notify() -> None:
        for listener in list(workflow_change_listeners):
            listener(workflow, event)

    transaction.on_commit(notify)


def workflow_graph_validate(*, graph: Any, owner_id: Any) -> None:
    """Validate a graph against the node registry and the owner's credentials."""
    validate_graph(
        graph,
        credentials=credential_types_for_owner(owner_id=owner_id),
        max_nodes=settings.GRAPH_MAX_NODES,
        max_bytes=settings.GRAPH_MAX_BYTES,
    )


def _store_version(*, workflow: Workflow, by: User | None) -> WorkflowVersion:
    return WorkflowVersion.objects.create(
        workflow=workflow,
        version=workflow.version,
        name=workflow.name,
        description=workflow.description,
        graph=workflow.graph,
        tags=workflow.tags,
        created_by=by,
        created_at=workflow.updated_at,
    )


@transaction.atomic
def workflow_create(
    *,
    owner: User,
    name: str,
    graph: dict[str, Any],
    description: str = "",
    tags: list[str] | None = None,
    is_public: bool = False,
    active: bool = False,
) -> Workflow:
    """Create a workflow at version 1; an invalid graph stores nothing."""
    workflow_graph_validate(graph=graph, owner_id=owner.pk)
    now = timezone.now()
    workflow = Workflow.objects.create(
        owner=owner,
        name=name,
        description=description,
        graph=graph,
        tags=list(tags or []),
        is_public=is_public,
        active=active,
        version=1,
        created_at=now,
        updated_at=now,
    )
    _store_version(workflow=workflow, by=owner)
    _notify_on_commit(workflow, "created")
    return workflow


def _write_version(
    *, workflow: Workflow, by: User, expected_version: int, changes: dict[str, Any]
) -> Workflow:
    """Apply `changes` if the row is still at `expected_version`; store the new version row.

    One conditional UPDATE ... WHERE version = expected: of two writers that read the same
    version, the second blocks on the row lock, then matches no row and gets a conflict.
    """
    if workflow.version != expected_version:
        raise VersionConflict(details={"current_version": workflow.version})
    merged = {field: changes.get(field, getattr(workflow, field)) for field in EDITABLE_FIELDS}
    workflow_graph_validate(graph=merged["graph"], owner_id=workflow.owner_id)
    now = timezone.now()
    with transaction.atomic():
        updated = Workflow.objects.filter(pk=workflow.pk, version=expected_version).update(
            **merged, version=F("version") + 1, updated_at=now
        )
        if updated == 0:
            current = Workflow.objects.filter(pk=workflow.pk).values_list("version", flat=True)
            if not current:
                raise NotFound("Workflow not found.")
            raise VersionConflict(details={"current_version": current[0]})
        fresh = Workflow.objects.select_related("owner").get(pk=workflow.pk)
        _store_version(workflow=fresh, by=by)
        if fresh.active == workflow.active:
            event = "updated"
        else:
            event = "activated" if fresh.active else "deactivated"
        _notify_on_commit(fresh, event)
    return fresh


def workflow_update(
    *, workflow: Workflow, by: User, expected_version: int, changes: dict[str, Any]
) -> Workflow:
    """Change a workflow under optimistic locking; bumps the version and stores a version row."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not editable: {sorted(unknown)}")
    return _write_version(
        workflow=workflow, by=by, expected_version=expected_version, changes=changes
    )


def workflow_version_restore(
    *, workflow: Workflow, by: User, version_number: int, expected_version: int
) -> Workflow:
    """Make an old version current again, as a new version."""
    old = WorkflowVersion.objects.filter(workflow=workflow, version=version_number).first()
    if old is None:
        raise NotFound("Version not found.")
    changes = {
        "name": old.name,
        "description": old.description,
        "graph": old.graph,
        "tags": old.tags,
    }
    return _write_version(
        workflow=workflow, by=by, expected_version=expected_version, changes=changes
    )


def workflow_delete(*, workflow: Workflow, by: User) -> None:
    """Delete a workflow and its version history."""
    workflow_id = workflow.pk
    with transaction.atomic():
        workflow.delete()
        # delete() clears the pk; listeners still need to know which workflow went.
        workflow.pk = workflow_id
        _notify_on_commit(workflow, "deleted")


def _credential_ids_cleared(graph: Any, *, allowed: set[str]) -> Any:
    """A copy of `graph` whose nodes name no credential outside `allowed`."""
    cleared = copy.deepcopy(graph)
    nodes = cleared.get("nodes") if isinstance(cleared, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        params = node.get("params") if isinstance(node, dict) else None
        credential = params.get("credential") if isinstance(params, dict) else None
        if credential is not None and str(credential) not in allowed:
            params["credential"] = None  # type: ignore[index]
    return cleared


@transaction.atomic
def workflow_duplicate(*, workflow: Workflow, by: User) -> Workflow:
    """Copy a workflow the caller may read into a private one they own, at version 1.

    References to credentials the caller does not own become null in the copy.
    """
    allowed = set(credential_types_for_owner(owner_id=by.pk))
    name = workflow.name[: NAME_MAX_LENGTH - len(COPY_SUFFIX)] + COPY_SUFFIX
    return workflow_create(
        owner=by,
        name=name,
        description=workflow.description,
        graph=_credential_ids_cleared(workflow.graph, allowed=allowed),
        tags=list(workflow.tags),
        is_public=False,
        active=False,
    )
