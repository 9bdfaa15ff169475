"""The live streams' reads: a snapshot comes from the row its visibility check reads."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from executions.models import Execution
from live import selectors
from tests.live.conftest import add_lines, make_execution, make_workflow

pytestmark = pytest.mark.django_db


def test_a_visible_executions_snapshot_is_one_statement_with_the_last_stored_seq(
    owner: User,
) -> None:
    execution = make_execution(make_workflow(owner), status="succeeded", duration_ms=12)
    add_lines(execution, 1, 4)
    Execution.objects.filter(pk=execution.pk).update(output={"a": 1})
    with CaptureQueriesContext(connection) as queries:
        snapshot = selectors.execution_snapshot_for_user(user=owner, execution_id=execution.pk)
    assert len(queries) == 1
    assert snapshot == selectors.ExecutionSnapshot(
        execution_id=str(execution.pk),
        workflow_id=str(execution.workflow_id),
        status="succeeded",
        is_terminal=True,
        last_seq=4,
        duration_ms=12,
        output={"a": 1},
    )
    assert selectors.execution_snapshots(execution_ids=[str(execution.pk)]) == {
        str(execution.pk): snapshot
    }


def test_no_snapshot_for_another_users_execution_or_a_missing_one(
    owner: User, outsider: User
) -> None:
    execution = make_execution(make_workflow(owner, is_public=True))
    assert selectors.execution_snapshot_for_user(user=outsider, execution_id=execution.pk) is None
    assert selectors.execution_snapshot_for_user(user=owner, execution_id=uuid.uuid4()) is None
    fresh = make_execution(make_workflow(owner))
    snapshot = selectors.execution_snapshot_for_user(user=owner, execution_id=fresh.pk)
    assert snapshot is not None
    assert snapshot.last_seq == 0
