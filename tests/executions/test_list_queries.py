"""Execution list and detail cost a fixed number of queries (no N+1 over rows or node runs)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from executions.models import Execution, NodeRun
from tests.conftest import client_for
from tests.factories import WorkflowFactory
from workflows.models import WorkflowVersion

pytestmark = pytest.mark.django_db


def _executions(owner: User, count: int, nodes: int) -> list[Execution]:
    """Finished executions spread over three workflows, each with `nodes` node runs."""
    workflows = WorkflowFactory.create_batch(3, owner=owner)
    versions = {v.workflow_id: v for v in WorkflowVersion.objects.filter(workflow__in=workflows)}
    executions = Execution.objects.bulk_create(
        [
            Execution(
                workflow=workflows[index % 3],
                workflow_version=1,
                version=versions[workflows[index % 3].pk],
                status="succeeded",
                trigger="manual",
                created_by=owner,
            )
            for index in range(count)
        ]
    )
    NodeRun.objects.bulk_create(
        [
            NodeRun(execution=execution, node_id=f"n{position}", type="debug", position=position)
            for execution in executions
            for position in range(nodes)
        ]
    )
    return executions


def _queries(user: User, path: str) -> tuple[int, dict[str, object]]:
    client = client_for(user)
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(path)
    assert answer.status_code == 200, answer.content
    return len(captured), answer.json()


def test_execution_list_queries_do_not_grow_with_page_size(owner: User) -> None:
    # given
    _executions(owner, 40, nodes=2)

    # when
    small, small_body = _queries(owner, "/api/executions?page_size=2")
    large, large_body = _queries(owner, "/api/executions?page_size=40")

    # then: the user, the count and the page
    assert len(small_body["results"]) == 2  # type: ignore[arg-type]
    assert len(large_body["results"]) == 40  # type: ignore[arg-type]
    assert small == large
    assert large <= 3


def test_execution_detail_queries_do_not_grow_with_node_runs(owner: User) -> None:
    # given
    few = _executions(owner, 1, nodes=1)[0]
    many = _executions(owner, 1, nodes=30)[0]

    # when
    with_one, one_body = _queries(owner, f"/api/executions/{few.pk}")
    with_thirty, thirty_body = _queries(owner, f"/api/executions/{many.pk}")

    # then: the user, the execution, its node runs
    assert len(one_body["node_runs"]) == 1  # type: ignore[arg-type]
    assert len(thirty_body["node_runs"]) == 30  # type: ignore[arg-type]
    assert with_one == with_thirty
    assert with_thirty <= 3
