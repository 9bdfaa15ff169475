"""Shared fixtures: the fixed cast of users and API clients for them.

The suite runs against the real PostgreSQL and Redis named by DATABASE_URL / REDIS_URL
(scripts/test.sh sets the local ones); in CI a missing server fails the run, never skips it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import psycopg
import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.db.models.sql.compiler import SQLCompiler
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tokens import tokens_issue
from tests.factories import UserFactory
from tests.mail import Recorder, smtp_server
from tests.servers import live_daphne

__all__ = ["live_daphne"]

# Fixtures that start real server processes: a test using one is end-to-end wherever it lives
# (the SQLite unit layer, `-m "not e2e"`, leaves it out).
SERVER_FIXTURES = frozenset(
    {"live_daphne", "daphne_url", "engine", "running_engine", "trigger_worker"}
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under scripts/test.sh or CI, stop at once when PostgreSQL or Redis is unreachable."""
    if os.environ.get("AUTOFLOW_REQUIRE_SERVERS") != "1" and os.environ.get("CI") != "true":
        return

    if "postgresql" not in settings.DATABASES["default"]["ENGINE"] or not settings.REDIS_URL:
        pytest.exit("The suite needs DATABASE_URL=postgres://... and REDIS_URL=redis://...", 3)
    problems = []
    try:
        with psycopg.connect(
            host=settings.DATABASES["default"]["HOST"] or "127.0.0.1",
            port=int(settings.DATABASES["default"]["PORT"] or 5432),
            user=settings.DATABASES["default"]["USER"] or "postgres",
            password=settings.DATABASES["default"]["PASSWORD"] or None,
            dbname="postgres",
            connect_timeout=5,
        ):
            pass
    except psycopg.Error as error:
        problems.append(f"PostgreSQL is unreachable: {error}")
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5).ping()
    except redis.RedisError as error:
        problems.append(f"Redis is unreachable: {error}")
    if problems:
        pytest.exit("; ".join(problems), 3)


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Rate-limit counters must not leak from one test into the next."""
    for alias in settings.CACHES:
        caches[alias].clear()


def client_for(user: User | None) -> APIClient:
    """An API client signed in as `user` with a fresh access token (anonymous for None)."""
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens_issue(user=user)['access']}")
    return client


@pytest.fixture
def owner(db: Any) -> User:
    return UserFactory.create(email="owner@example.com", name="Olive Owner")


@pytest.fixture
def reader(db: Any) -> User:
    return UserFactory.create(email="reader@example.com", name="Rita Reader")


@pytest.fixture
def outsider(db: Any) -> User:
    return UserFactory.create(email="outsider@example.com", name="Oscar Outsider")


@pytest.fixture
def admin_user(db: Any) -> User:
    return UserFactory.create(
        email="admin@example.com", name="Ada Admin", is_staff=True, is_superuser=True
    )


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def owner_client(owner: User) -> APIClient:
    return client_for(owner)


@pytest.fixture
def reader_client(reader: User) -> APIClient:
    return client_for(reader)


@pytest.fixture
def outsider_client(outsider: User) -> APIClient:
    return client_for(outsider)


@pytest.fixture
def admin_client_api(admin_user: User) -> APIClient:
    return client_for(admin_user)


@pytest.fixture
def orm_compiles() -> Iterator[list[str]]:
    """Every SQL text the ORM compiles meanwhile."""
    compiled: list[str] = []
    real = SQLCompiler.as_sql

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        compiled.append(result[0])
        return result

    with mock.patch.object(SQLCompiler, "as_sql", counting):
        yield compiled


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    """A real SMTP server (aiosmtpd) on a loopback port: its recorder and port."""
    with smtp_server() as server:
        yield server
