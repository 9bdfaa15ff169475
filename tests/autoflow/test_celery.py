"""The Celery app's process hooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from autoflow.celery import _prepare_pool_child_connections


@pytest.fixture
def default_settings_dict() -> Iterator[dict[str, Any]]:
    settings_dict: dict[str, Any] = connections["default"].settings_dict
    saved = dict(settings_dict)
    yield settings_dict
    settings_dict.clear()
    settings_dict.update(saved)


def test_a_pool_child_keeps_its_database_connection_between_tasks(
    default_settings_dict: dict[str, Any], settings: Any
) -> None:
    settings.WORKER_DATABASE_CONN_MAX_AGE = 123
    default_settings_dict["CONN_MAX_AGE"] = 0

    _prepare_pool_child_connections()

    assert default_settings_dict["CONN_MAX_AGE"] == 123


def test_with_a_connection_pool_a_pool_child_leaves_reuse_to_the_pool(
    default_settings_dict: dict[str, Any], settings: Any
) -> None:
    settings.WORKER_DATABASE_CONN_MAX_AGE = 123
    default_settings_dict["CONN_MAX_AGE"] = 0
    default_settings_dict["OPTIONS"] = {**default_settings_dict["OPTIONS"], "pool": {}}

    _prepare_pool_child_connections()

    assert default_settings_dict["CONN_MAX_AGE"] == 0
