"""The Celery app's process hooks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from autoflow.celery import _prepare_pool_child_connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def default_settings_dict() -> Iterator[dict[str, Any]]:
    settings_dict: dict[str, Any] = connections["default"].settings_dict
    saved = dict(settings_dict)
    yield settings_dict
    settings_dict.clear()
    settings_dict.update(saved)


def _close_at_in_a_prepared_child_thread() -> float | None:
    """Run the pool-child hook on a fresh thread, open a connection there, read its close_at."""
    seen: list[float | None] = []

    def child() -> None:
        _prepare_pool_child_connections()
        connection = connections["default"]
        try:
            connection.ensure_connection()
            seen.append(connection.close_at)
        finally:
            connection.close()

    thread = threading.Thread(target=child)
    thread.start()
    thread.join(10)
    return seen[0]


def test_a_pool_child_keeps_its_database_connection_between_tasks(
    default_settings_dict: dict[str, Any], settings: Any
) -> None:
    settings.WORKER_DATABASE_CONN_MAX_AGE = 123
    default_settings_dict["CONN_MAX_AGE"] = 0

    close_at = _close_at_in_a_prepared_child_thread()

    assert close_at is not None
    assert 120 < close_at - time.monotonic() <= 123


def test_with_a_connection_pool_a_pool_child_leaves_reuse_to_the_pool(settings: Any) -> None:
    settings.WORKER_DATABASE_CONN_MAX_AGE = 123
    # A stand-in: opening a real pooled connection would leave a pool behind in this process.
    pooled = SimpleNamespace(settings_dict={"OPTIONS": {"pool": {}}}, close_at=0.0)

    def child() -> None:
        _prepare_pool_child_connections()
        connection_created.send(sender=type(pooled), connection=pooled)

    thread = threading.Thread(target=child)
    thread.start()
    thread.join(10)

    assert pooled.close_at == 0.0  # CONN_MAX_AGE=0: back to the pool when the task ends


def test_every_setting_is_resolved_once_into_the_first_map_celery_reads() -> None:
    from django.conf import settings

    from autoflow.celery import app

    # Set by Django's settings, a Celery default, and one set on the app: each answers as
    # before, from the configuration's first map (no walk through Django's settings).
    expected = {
        "task_acks_late": settings.CELERY_TASK_ACKS_LATE,
        "broker_url": settings.CELERY_BROKER_URL,
        "task_default_queue": "celery",
        "task_always_eager": False,
        "worker_consumer": "autoflow.celery:BrokerLossTolerantConsumer",
    }
    changes = app.conf.changes
    assert changes is not None
    for key, value in expected.items():
        assert app.conf[key] == value
        assert changes[key] == value
