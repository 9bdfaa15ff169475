"""The Celery app: `celery -A autoflow worker` / `celery -A autoflow beat`."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")

app = Celery("autoflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def _drop_inherited_connections(**_: Any) -> None:
    """Forget the parent's database sockets and pools in a forked pool child.

    Forget, not close: closing would end the parent's sessions over the shared sockets, and a
    psycopg pool's worker threads do not survive a fork anyway.
    """
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    for connection in connections.all(initialized_only=True):
        connection.connection = None
    inherited_pools: dict[str, Any] = getattr(DatabaseWrapper, "_connection_pools", {})
    inherited_pools.clear()


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from autoflow.workers import heartbeat_start

    heartbeat_start(getattr(sender, "hostname", None) or "worker")


@worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    from autoflow.workers import heartbeat_stop

    heartbeat_stop()
