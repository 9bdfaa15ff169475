"""Database connections kept by long-lived threads: Celery pool children, web request threads.

Django closes a connection when its request ends unless `CONN_MAX_AGE` says otherwise, and that
setting is one per database for the whole process. A thread marked here (it outlives many
requests or tasks, and there are few of them) keeps the connections it opens for
`WORKER_DATABASE_CONN_MAX_AGE` instead; Django's own checks at each request's or task's start
and end (`close_old_connections`, the health check) still replace a broken or aged one. With a
connection pool (`DATABASE_POOL=true`) nothing changes: connections go back to the pool.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

_thread = threading.local()


def keep_connections_in_this_thread() -> None:
    """Mark the current thread long-lived: connections it opens are kept between uses."""
    _thread.keeps_connections = True


@receiver(connection_created)
def _keep_long_lived_connection(sender: Any, connection: BaseDatabaseWrapper, **_: Any) -> None:
    if getattr(_thread, "keeps_connections", False) and "pool" not in connection.settings_dict.get(
        "OPTIONS", {}
    ):
        connection.close_at = time.monotonic() + settings.WORKER_DATABASE_CONN_MAX_AGE
