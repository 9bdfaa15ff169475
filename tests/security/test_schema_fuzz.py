"""Schema-driven fuzzing (schemathesis) of every operation in `/api/schema`.

Authenticated as a normal user who owns one of each object, with path parameters pointing at
those real objects: no answer may be a 5xx, and every answer must match the schema (status
code documented, body shape, content type). AUTOFLOW_FULL_SIZE=1 raises the example count.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import checks

from accounts.tokens import tokens_issue
from tests.factories import UserFactory
from tests.security.world import World, scaled, world_create

HIGH_LIMIT = "1000000/15m"
# What the answers must satisfy. Not `positive_data_acceptance`: the schema types free-form
# JSON (a graph, credential data) loosely, and their real validation answers 400 by design.
RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
EXAMPLES = scaled(12, 300)


def _operation_labels() -> list[str]:
    document = SchemaGenerator().get_schema(request=None, public=True)
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


@cache
def _served_schema() -> Any:
    """The schema as `/api/schema` serves it, calling the app in process (WSGI)."""
    return schemathesis.openapi.from_wsgi("/api/schema", get_wsgi_application())


@pytest.fixture
def _keep_test_connection() -> Iterator[None]:
    """Calling the WSGI app directly must not close the test's connection (as Client does)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_world(db: Any, settings: Any, _keep_test_connection: None) -> World:
    settings.RATE_LIMIT_GENERAL = HIGH_LIMIT
    settings.RATE_LIMIT_AUTH = HIGH_LIMIT
    settings.RATE_LIMIT_REFRESH = HIGH_LIMIT
    settings.RATE_LIMIT_WEBHOOK = HIGH_LIMIT
    user = UserFactory.create(email="fuzz@example.com", name="Fuzz User")
    return world_create(user)


@pytest.mark.parametrize("label", _operation_labels())
def test_every_operation_answers_within_its_schema(label: str, fuzz_world: World) -> None:
    operation = _served_schema().find_operation_by_label(label)
    assert operation is not None, f"{label} is in the generated schema but not the served one"
    access = tokens_issue(user=fuzz_world.user)["access"]
    values = fuzz_world.path_values()
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        # given: real ids in the path, so the ownership code runs, not only the 404 path
        for name in list(case.path_parameters or {}):
            if name in values:
                case.path_parameters[name] = values[name]
        # when
        response = case.call(headers={"Authorization": f"Bearer {access}"})
        seen.append(response.status_code)
        # then
        assert response.status_code < 500, f"{label}: {response.text[:2000]}"
        case.validate_response(response, checks=RESPONSE_CHECKS)

    check()
    assert seen, f"{label}: no example ran"
