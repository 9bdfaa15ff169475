"""A user's set of real objects (workflow, credential, API key, executions) for the suites.

The security tests address every endpoint with ids that exist, so a refusal is decided by
ownership and scope rules, never by a random id that happens to be missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from accounts.models import ApiKey, User
from accounts.services import api_key_create
from executions.models import Execution, ExecutionStatus
from executions.services import execution_start
from workflows.credentials import credential_create
from workflows.models import Credential, Workflow
from workflows.services import workflow_create

BEARER_TOKEN = "plaintext-bearer-4f1c9a77e2"  # the suites grep for this value

FULL_SIZE = os.environ.get("AUTOFLOW_FULL_SIZE") == "1"


def scaled(bounded: int, full: int) -> int:
    """`bounded` in CI, `full` when AUTOFLOW_FULL_SIZE=1 asks for the full-size run."""
    return full if FULL_SIZE else bounded


def webhook_graph() -> dict[str, Any]:
    """A webhook trigger feeding a debug node."""
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "webhook", "methods": ["POST"]}},
            {"id": "log", "type": "debug", "params": {"message": "got {{ input.body }}"}},
        ],
        "edges": [{"source": "t", "target": "log"}],
    }


@dataclass
class World:
    user: User
    workflow: Workflow
    credential: Credential
    api_key: ApiKey
    raw_api_key: str
    finished: Execution
    running: Execution

    def path_values(self) -> dict[str, str]:
        """A real value for every path parameter the URL conf uses."""
        return {
            "workflow_id": str(self.workflow.pk),
            "credential_id": str(self.credential.pk),
            "api_key_id": str(self.api_key.pk),
            "execution_id": str(self.finished.pk),
            "version_number": "1",
            "token": self.workflow.webhook_token or "no-token",
        }


def world_create(user: User, *, is_public: bool = False) -> World:
    """Create one of each object for `user` (executions are not enqueued outside commits)."""
    workflow = workflow_create(
        owner=user, name=f"{user.name} flow", graph=webhook_graph(), is_public=is_public
    )
    workflow.active = True
    workflow.save(update_fields=["active"])
    credential = credential_create(
        owner=user, name="bearer", type="http_bearer", data={"token": BEARER_TOKEN}
    )
    api_key, raw_key = api_key_create(
        user=user, name="key", scopes=["workflows:read"], expires_at=None
    )
    finished, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=user)
    Execution.objects.filter(pk=finished.pk).update(
        status=ExecutionStatus.FAILED,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        duration_ms=1,
        error={"code": "node_error", "message": "boom", "node_id": "log"},
    )
    finished.refresh_from_db()
    running, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=user)
    return World(
        user=user,
        workflow=workflow,
        credential=credential,
        api_key=api_key,
        raw_api_key=raw_key,
        finished=finished,
        running=running,
    )
