"""Thin schedule task: beat sends it with a workflow id; the service decides whether to run."""

from __future__ import annotations

from celery import shared_task
from django.utils.dateparse import parse_datetime

from triggers import services


@shared_task(ignore_result=True)
def schedule_fire_task(workflow_id: str, scheduled_at: str | None = None) -> str | None:
    """Start one scheduled execution of the workflow; return its id, or None when disarmed."""
    parsed = parse_datetime(scheduled_at) if scheduled_at else None
    execution = services.schedule_fire(
        workflow_id=workflow_id, scheduled_at=parsed or services.schedule_fire_time()
    )
    return None if execution is None else str(execution.pk)
