"""Precompiled single-row reads: the same instance the ORM reads, without the ORM's compile."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.db.models import Model
from django.test import RequestFactory
from rest_framework.request import Request

from accounts.authentication import JwtAuthentication
from accounts.models import User
from accounts.tokens import tokens_issue
from autoflow.exceptions import TokenInvalid
from autoflow.statements import _json_value, execute, get_one, json_records
from autoflow.storable import json_storable
from tests.executions.conftest import make_graph, make_workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db
EAST = dt.timezone(dt.timedelta(hours=2))


def _values(instance: Model) -> dict[str, Any]:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def test_get_one_reads_the_row_the_orm_reads(owner):
    workflow = make_workflow(
        owner, make_graph([{"id": "a", "type": "test_emit", "params": {}}], [("t", "a")])
    )
    Workflow.objects.filter(pk=workflow.pk).update(webhook_token="tok-1", tags=["x", "y"])
    expected = _values(Workflow.objects.get(pk=workflow.pk))

    by_pk = get_one(Workflow, "pk", workflow.pk)
    by_text_pk = get_one(Workflow, "pk", str(workflow.pk))
    by_token = get_one(Workflow, "webhook_token", "tok-1")

    for found in (by_pk, by_text_pk, by_token):
        assert found is not None
        assert _values(found) == expected
        assert not found._state.adding
    assert isinstance(expected["graph"], dict)  # JSON decoded, not text
    user = get_one(User, "pk", owner.pk)
    assert user is not None
    assert _values(user) == _values(User.objects.get(pk=owner.pk))


def test_get_one_finds_nothing_for_a_missing_or_malformed_key(owner):
    make_workflow(owner, make_graph([], []))
    assert get_one(Workflow, "pk", uuid.uuid4()) is None
    assert get_one(Workflow, "pk", "not-a-uuid") is None
    assert get_one(Workflow, "webhook_token", "no-such-token") is None


def test_get_one_refuses_a_field_that_is_not_unique():
    with pytest.raises(TypeError, match="not unique"):
        get_one(Workflow, "name", "anything")


def test_get_one_compiles_nothing_through_the_orm(owner, orm_compiles):
    for _ in range(3):
        assert get_one(User, "pk", owner.pk) is not None
    assert orm_compiles == []


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared statements")
def test_a_hot_statement_is_prepared_on_its_connection_and_the_orms_queries_are_not(owner):
    for _ in range(6):  # psycopg prepares from the sixth run on
        assert get_one(User, "pk", owner.pk) is not None
        assert User.objects.filter(pk=owner.pk).count() == 1

    prepared = _prepared_statements()
    assert [sql for sql in prepared if 'FROM "accounts_user" WHERE "id" = $1' in sql]
    assert not [sql for sql in prepared if "COUNT(" in sql]  # Django's cursors bind client-side
    assert get_one(User, "pk", owner.pk) is not None  # the prepared statement runs


@pytest.mark.skipif(connection.vendor != "postgresql", reason="psycopg's cursor")
def test_a_read_tells_rows_from_none_without_building_column_descriptions(owner, monkeypatch):
    def refuse(_cursor: Any) -> None:
        raise AssertionError("description built")

    monkeypatch.setattr(psycopg.RawCursor, "description", property(refuse))
    assert get_one(User, "pk", owner.pk) is not None
    assert get_one(User, "pk", uuid.uuid4()) is None
    assert (
        execute("default", "UPDATE accounts_user SET name = name WHERE id = %s", [owner.pk]) is None
    )


def _bearer(token: str) -> Request:
    return Request(RequestFactory().get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_a_request_reads_its_user_without_the_orm(owner, orm_compiles):
    access = tokens_issue(user=owner)["access"]
    user, _ = JwtAuthentication().authenticate(_bearer(access))  # type: ignore[misc]
    assert user.pk == owner.pk
    assert user.email == owner.email
    assert orm_compiles == []


def test_a_user_deactivated_in_the_database_is_refused_at_once(owner):
    access = tokens_issue(user=owner)["access"]
    User.objects.filter(pk=owner.pk).update(is_active=False)
    with pytest.raises(TokenInvalid):
        JwtAuthentication().authenticate(_bearer(access))


def test_a_deleted_user_is_refused(owner):
    access = tokens_issue(user=owner)["access"]
    User.objects.filter(pk=owner.pk).delete()
    with pytest.raises(TokenInvalid):
        JwtAuthentication().authenticate(_bearer(access))


@pytest.mark.parametrize(
    "row",
    [
        {"id": uuid.UUID(int=7), "at": dt.datetime(2026, 11, 27, 23, 0, 1, 5, tzinfo=dt.UTC)},
        {"day": dt.date(2026, 11, 27), "east": dt.datetime(2026, 1, 2, 3, 4, tzinfo=EAST)},
        {"text": "naïve — ünïcode ✓ \\u0000 \x01", "none": None, "flag": True, "n": -3.5e-9},
        {"nested": {"list": [1, [2, {"k": "v"}]], "tuple": (1, 2)}, "empty": {}},
        {"big": 2**70, "small": -(2**63)},  # past orjson's 64 bits: json.dumps writes it
        {"keys": {1: "int key", None: "null key"}},  # not strings: json.dumps writes them
    ],
)
def test_json_records_writes_what_json_dumps_wrote(row):
    before = json.dumps([row], default=_json_value, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(json_records([row])) == json.loads(before)


def test_json_records_leaves_a_lone_surrogate_for_the_caller_to_find():
    encoded = json_records([{"text": "half \ud800 a pair"}])
    assert not json_storable(encoded)  # `_storable_records` then scrubs and writes again
    with pytest.raises(TypeError):
        json_records([{"value": object()}])
