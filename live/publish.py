"""Push events to WebSocket groups once the surrounding transaction commits."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any, Literal, get_args

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

if TYPE_CHECKING:
    from workflows.models import Workflow

logger = logging.getLogger(__name__)

WorkflowEvent = Literal["updated", "activated", "deactivated", "deleted"]
_WORKFLOW_EVENTS: dict[str, WorkflowEvent] = {event: event for event in get_args(WorkflowEvent)}


def workflow_group(workflow_id: uuid.UUID | str) -> str:
    """The group every socket watching one workflow joins."""
    return f"workflow.{workflow_id}"


def execution_group(execution_id: uuid.UUID | str) -> str:
    """The group every socket watching one execution joins."""
    return f"execution.{execution_id}"


def user_group(user_id: uuid.UUID | str) -> str:
    """The group each of a user's sockets joins for notifications."""
    return f"user.{user_id}"


def group_send_now(group: str, message: dict[str, Any]) -> None:
    """Send one message to a group; live delivery is best-effort, so a failure is only logged."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # a down Redis must never fail the write that triggered the event
        logger.warning("channel layer publish failed", extra={"group": group}, exc_info=True)


def group_send_on_commit(group: str, message: dict[str, Any]) -> None:
    """Send a message to a group after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: group_send_now(group, message))


def workflow_update_publish(
    *, workflow_id: uuid.UUID | str, event: WorkflowEvent, version: int
) -> None:
    """Tell a workflow's watchers it changed, once the change is committed."""
    group_send_on_commit(
        workflow_group(workflow_id),
        workflow_update_message(workflow_id=workflow_id, event=event, version=version),
    )


def workflow_update_message(
    *, workflow_id: uuid.UUID | str, event: WorkflowEvent, version: int
) -> dict[str, Any]:
    """The channel-layer message a `workflow:update` is made from."""
    return {
        "type": "workflow.update",
        "workflow_id": str(workflow_id),
        "event": event,
        "version": version,
    }


def workflow_change_publish(workflow: Workflow, event: str) -> None:
    """Listener for `workflows.services` (called after commit): tell the workflow's watchers."""
    known = _WORKFLOW_EVENTS.get(event)
    if known is None:
        return  # "created": nobody can be watching a workflow that did not exist yet
    group_send_now(
        workflow_group(workflow.pk),
        workflow_update_message(workflow_id=workflow.pk, event=known, version=workflow.version),
    )
