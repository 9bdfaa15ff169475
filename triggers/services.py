"""Trigger writes: arm webhooks and schedules after workflow changes, rotate tokens, fire schedules.

`workflow_triggers_sync` is registered as a workflow change listener (see `apps.py`): it runs
after every committed workflow write and reconciles the webhook token and the beat schedule
with what the workflow now says, so there is no state to drift.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import uuid

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from autoflow.exceptions import InvalidState
from executions.models import Execution, ExecutionTrigger
from executions.services import execution_start
from nodes.builtin.trigger import TriggerParams
from triggers.config import trigger_params
from workflows.models import Workflow

logger = logging.getLogger(__name__)

SCHEDULE_TASK = "triggers.tasks.schedule_fire_task"


def webhook_token_new() -> str:
    """Return a fresh, unguessable webhook token (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def webhook_token_ensure(*, workflow: Workflow) -> str:
    """Give the workflow a webhook token unless it has one; return the token it has."""
    if workflow.webhook_token:
        return workflow.webhook_token
    token = webhook_token_new()
    # Conditional: of two concurrent first saves, one token wins and both read it back.
    Workflow.objects.filter(pk=workflow.pk, webhook_token__isnull=True).update(webhook_token=token)
    stored = Workflow.objects.filter(pk=workflow.pk).values_list("webhook_token", flat=True)
    workflow.webhook_token = stored[0] if stored else token
    return workflow.webhook_token or token


def webhook_token_rotate(*, workflow: Workflow) -> Workflow:
    """Replace the workflow's webhook token; the old URL answers 404 from this commit on."""
    params = trigger_params(workflow.graph)
    if params is None or params.mode != "webhook":
        raise InvalidState("This workflow has no webhook trigger; there is no URL to rotate.")
    workflow.webhook_token = webhook_token_new()
    Workflow.objects.filter(pk=workflow.pk).update(webhook_token=workflow.webhook_token)
    return workflow


def schedule_task_name(workflow_id: uuid.UUID | str) -> str:
    """Return the beat task name of a workflow's schedule."""
    return f"workflow-schedule:{workflow_id}"


def _crontab_for(params: TriggerParams) -> CrontabSchedule:
    minute, hour, day_of_month, month_of_year, day_of_week = (params.cron or "").split()
    fields = {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
        "timezone": params.timezone,
    }
    crontab = CrontabSchedule.objects.filter(**fields).order_by("pk").first()
    return crontab or CrontabSchedule.objects.create(**fields)


def schedule_sync(*, workflow: Workflow, params: TriggerParams | None) -> None:
    """Make beat's periodic task match the workflow: present and enabled only while armed."""
    name = schedule_task_name(workflow.pk)
    armed = workflow.active and params is not None and params.mode == "schedule" and params.cron
    if not armed or params is None:
        PeriodicTask.objects.filter(name=name).delete()
        return
    with transaction.atomic():
        crontab = _crontab_for(params)
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults={
                "task": SCHEDULE_TASK,
                "crontab": crontab,
                "interval": None,
                "kwargs": json.dumps({"workflow_id": str(workflow.pk)}),
                "enabled": True,
                "one_off": False,
            },
        )


def schedule_remove(*, workflow_id: uuid.UUID | str) -> None:
    """Drop a workflow's periodic task, if it has one."""
    PeriodicTask.objects.filter(name=schedule_task_name(workflow_id)).delete()


def workflow_triggers_sync(workflow: Workflow, event: str) -> None:
    """Reconcile a workflow's webhook token and schedule after a committed change."""
    if event == "deleted":
        schedule_remove(workflow_id=workflow.pk)
        return
    params = trigger_params(workflow.graph)
    if params is not None and params.mode == "webhook":
        webhook_token_ensure(workflow=workflow)
    schedule_sync(workflow=workflow, params=params)


def schedule_fire(*, workflow_id: uuid.UUID | str, scheduled_at: dt.datetime) -> Execution | None:
    """Start one `schedule` execution if the workflow is still active and still scheduled.

    The fire time is the idempotency key, so a duplicate delivery of one firing starts nothing.
    """
    workflow = Workflow.objects.select_related("owner").filter(pk=workflow_id).first()
    if workflow is None or not workflow.active:
        return None
    params = trigger_params(workflow.graph)
    if params is None or params.mode != "schedule":
        return None
    fire_time = scheduled_at.isoformat()
    execution, _ = execution_start(
        workflow=workflow,
        trigger=ExecutionTrigger.SCHEDULE,
        input={"scheduled_at": fire_time},
        user=workflow.owner,
        idempotency_key=fire_time,
        idempotency_scope=f"schedule:{workflow.pk}",
    )
    return execution


def schedule_fire_time(now: dt.datetime | None = None) -> dt.datetime:
    """Return the minute a cron firing stands for (beat sends no fire time with the task)."""
    return (now or timezone.now()).replace(second=0, microsecond=0)
