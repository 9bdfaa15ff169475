"""Thin, id-based engine tasks: the execution row is the result, so none keeps a Celery result."""

from __future__ import annotations

from typing import Any

import structlog
from celery import shared_task
from celery.signals import worker_shutting_down

from executions import services


@shared_task(ignore_result=True, acks_late=True, reject_on_worker_lost=True)
def run_execution_task(execution_id: str) -> None:
    """Advance one execution; a duplicate or late delivery finds nothing to claim and returns."""
    with structlog.contextvars.bound_contextvars(execution_id=execution_id):
        services.execution_run(execution_id=execution_id)


@shared_task(ignore_result=True)
def sweep_executions_task() -> None:
    """Wake due waits, recover runs whose worker vanished, re-enqueue runs nobody took."""
    services.executions_sweep()


@worker_shutting_down.connect
def _stop_taking_nodes(**_: Any) -> None:
    # Thread and solo pools share this process: running executions hand back at the next node.
    services.shutdown_requested.set()
