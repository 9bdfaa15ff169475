"""Trigger reads: what a workflow's webhook looks like and how its last calls went."""

from __future__ import annotations

from typing import Any

from workflows.models import WebhookCall, Workflow

LAST_CALLS_LIMIT = 20


def webhook_last_calls(*, workflow: Workflow) -> list[dict[str, Any]]:
    """The workflow's latest webhook calls, newest first."""
    calls = WebhookCall.objects.filter(workflow=workflow).order_by("-at", "-id")
    return [
        {
            "at": call.at,
            "method": call.method,
            "status": call.status,
            "execution_id": call.execution_id,
        }
        for call in calls[:LAST_CALLS_LIMIT]
    ]
