"""The PostgreSQL backend's health check: no `SELECT 1` on a quiet socket, a dead one replaced."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from django.db import close_old_connections, connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from autoflow.postgresql.base import socket_is_quiet
from autoflow.statements import get_one
from tests.servers import database_url_from_settings

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backend's own"),
]


def _kept() -> None:
    """Keep the connection between requests, as the web's request threads and pool children do
    (the tests' CONN_MAX_AGE of 0 would close it at every request's start instead)."""
    User.objects.count()
    connection.close_at = None


def _checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count Django's `SELECT 1` checks on the default connection."""
    calls: list[int] = []
    usable = connection.is_usable

    def counted() -> bool:
        calls.append(1)
        return usable()

    monkeypatch.setattr(connection, "is_usable", counted)
    return calls


def test_a_request_on_a_quiet_connection_runs_no_select_1(monkeypatch):
    _kept()
    kept = connection.connection
    checks = _checks(monkeypatch)
    close_old_connections()  # what a request's or a task's start does: re-arms the check
    User.objects.count()
    assert checks == []
    assert getattr(connection, "health_check_done")  # noqa: B009 - not in the stubs
    assert connection.connection is kept


def test_a_connection_the_server_ended_is_checked_and_replaced_before_the_next_query(monkeypatch):
    _kept()
    ended = connection.connection.info.backend_pid
    url = database_url_from_settings(connection.settings_dict)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [ended])
    deadline = time.monotonic() + 5
    while socket_is_quiet(connection.connection.fileno()) and time.monotonic() < deadline:
        time.sleep(0.01)
    checks = _checks(monkeypatch)
    close_old_connections()
    assert User.objects.count() >= 0  # no error: the dead connection was replaced first
    assert checks == [1]
    assert connection.connection.info.backend_pid != ended


def test_inside_a_transaction_django_decides(monkeypatch: Any):
    _kept()
    checks = _checks(monkeypatch)
    connection.set_autocommit(False)
    try:
        connection.connection.execute("SELECT 1")  # the server now has a transaction open
        setattr(connection, "health_check_done", False)  # noqa: B010 - not in the stubs
        connection.close_if_health_check_failed()
    finally:
        connection.rollback()
        connection.set_autocommit(True)
    assert checks == [1]


def test_the_query_log_shows_a_prepared_statement_too():
    user = User.objects.create(email="log@example.com", name="Log")
    with CaptureQueriesContext(connection) as captured:
        for _ in range(7):  # prepared from the sixth run on
            get_one(User, "pk", user.pk)
    assert len(captured) == 7
    assert all('FROM "accounts_user" WHERE "id" = $1' in query["sql"] for query in captured)
