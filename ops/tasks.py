"""Scheduled operator jobs (thin: they call ops.services)."""

from __future__ import annotations

from celery import shared_task

from ops.services import executions_prune_by_retention


@shared_task(ignore_result=True)
def prune_executions_task() -> dict[str, int]:
    """Delete finished executions past their status's retention, and old webhook calls (daily)."""
    return executions_prune_by_retention()
