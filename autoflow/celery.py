"""The Celery app: `celery -A autoflow worker` / `celery -A autoflow beat`."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from celery.worker.consumer import Consumer

logger = logging.getLogger(__name__)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")

app = Celery("autoflow")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.worker_consumer = "autoflow.celery:BrokerLossTolerantConsumer"
# Celery's Django fixup closes every database connection before and after each task, whatever
# CONN_MAX_AGE says, unless this is set (then it closes them every 2 x N tasks, healthy or
# not). It is set out of reach: `_close_old_connections` below manages them as Django manages
# a request's.
app.conf.CELERY_DB_REUSE_MAX = sys.maxsize


@app.on_after_configure.connect
def _settle_configuration(sender: Celery, source: Any, **_: Any) -> None:
    """Resolve every setting once, into the first map Celery's lookups try.

    Read through Django's settings (`namespace="CELERY"`), a setting that Django's do not
    define cost every lookup a string of KeyErrors and AttributeErrors before Celery's default
    answered: ~13 µs, five times per published task, about a sixth of what Celery adds to an
    enqueue's Redis round trip. Settings do not change while a process runs, and anything set
    on `app.conf` later still lands in the same first map.
    """
    from celery.app.defaults import DEFAULTS

    source.update({key: source[key] for key in DEFAULTS})


class BrokerLossTolerantConsumer(Consumer):
    """Celery's consumer, kept alive through a broker restart that lands mid-delivery.

    After a lost connection Celery `collect()`s it, which drops the transport's client, and
    then closes it: kombu's Redis channel then restores its unacknowledged messages, and any
    task finishing a moment later acks its message, through that dropped client. Both raise
    AttributeError, which Celery treats as unrecoverable: the worker exits and stops running
    executions. So the broken connection is closed without collecting it; a restore or an ack
    that cannot reach Redis then fails with a connection error, which kombu logs and survives.
    Nothing is lost either way: an unacknowledged delivery comes back from the broker, and the
    sweeper re-enqueues every unfinished execution from the database.
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        logger.warning("consumer: connection to the broker lost (%r); reconnecting", exc)
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:
                logger.warning("consumer: the lost broker connection did not close cleanly")


@worker_process_init.connect
def _prepare_pool_child_connections(**_: Any) -> None:
    """Forget the parent's database sockets and pools in a forked pool child; keep its own.

    Forget, not close: closing would end the parent's sessions over the shared sockets, and a
    psycopg pool's worker threads do not survive a fork anyway. The child runs its tasks on
    this thread, which then keeps its connections between tasks (`autoflow.kept_connections`):
    opening one per task cost PostgreSQL more CPU than the task's queries.
    """
    from django.db import connections
    from django.db.backends.postgresql.base import DatabaseWrapper

    from autoflow.kept_connections import keep_connections_in_this_thread

    for connection in connections.all(initialized_only=True):
        connection.connection = None
    inherited_pools: dict[str, Any] = getattr(DatabaseWrapper, "_connection_pools", {})
    inherited_pools.clear()
    keep_connections_in_this_thread()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Any = None, **_: Any) -> None:
    """Close a connection that broke or outlived its CONN_MAX_AGE, as a request's ends do.

    It also re-arms Django's health check, so a task never starts on a connection that a
    database restart left dead. Eager calls run inside the caller's transaction: left alone.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    from autoflow.workers import heartbeat_start

    heartbeat_start(getattr(sender, "hostname", None) or "worker")


@worker_shutdown.connect
def _stop_heartbeat(sender: Any = None, **_: Any) -> None:
    from autoflow.workers import heartbeat_stop

    heartbeat_stop()
