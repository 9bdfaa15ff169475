"""Workflow writes tell the workflow's watchers, after commit."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from accounts.models import User
from tests.live.conftest import (
    access_token,
    make_workflow,
    open_socket,
    receive,
)
from workflows.services import workflow_delete, workflow_update

pytestmark = pytest.mark.django_db(transaction=True)


def test_service_writes_publish_update_activation_and_delete(owner: User) -> None:
    workflow = make_workflow(owner)
    token = access_token(owner)

    async def scenario() -> None:
        async with open_socket(token=token) as comm:
            await comm.send_json_to({"type": "subscribe:workflow", "workflow_id": str(workflow.pk)})
            await receive(comm)

            renamed = await sync_to_async(workflow_update)(
                workflow=workflow, by=owner, expected_version=1, changes={"name": "Renamed"}
            )
            assert await receive(comm) == {
                "type": "workflow:update",
                "workflow_id": str(workflow.pk),
                "event": "updated",
                "version": 2,
            }
            activated = await sync_to_async(workflow_update)(
                workflow=renamed, by=owner, expected_version=2, changes={"active": True}
            )
            assert (await receive(comm))["event"] == "activated"
            deactivated = await sync_to_async(workflow_update)(
                workflow=activated, by=owner, expected_version=3, changes={"active": False}
            )
            message = await receive(comm)
            assert (message["event"], message["version"]) == ("deactivated", 4)
            await sync_to_async(workflow_delete)(workflow=deactivated, by=owner)
            assert await receive(comm) == {
                "type": "workflow:update",
                "workflow_id": str(workflow.pk),
                "event": "deleted",
                "version": 4,
            }

    async_to_sync(scenario)()
