"""Who may read an execution, decided on its row without the ORM's compile."""

from __future__ import annotations

import pytest

from autoflow.exceptions import NotFound
from executions import selectors, services
from executions.api import ExecutionOutputSerializer
from executions.models import Execution, NodeRun
from tests.conftest import client_for
from tests.executions.conftest import make_graph, make_workflow

pytestmark = pytest.mark.django_db

GRAPH = make_graph([{"id": "a", "type": "test_emit", "params": {"value": 1}}], [("t", "a")])


def started(owner) -> Execution:
    execution, _ = services.execution_start(
        workflow=make_workflow(owner, GRAPH), trigger="manual", input={"x": 1}, user=owner
    )
    return execution


def test_owners_and_admins_read_an_execution_others_get_not_found(owner, outsider, admin_user):
    execution = started(owner)
    for user in (owner, admin_user):
        assert selectors.execution_get_for_user(user=user, execution_id=execution.pk) == execution
        detail = selectors.execution_detail_for_user(user=user, execution_id=str(execution.pk))
        assert [run.node_id for run in detail.node_runs.all()] == ["t", "a"]
    for execution_id in (execution.pk, Execution().pk, "not-a-uuid"):
        with pytest.raises(NotFound):
            selectors.execution_get_for_user(user=outsider, execution_id=execution_id)
        with pytest.raises(NotFound):
            selectors.execution_detail_for_user(user=outsider, execution_id=execution_id)


def test_the_detail_serializes_as_the_orms_prefetch_does(owner, django_assert_num_queries):
    execution = started(owner)
    NodeRun.objects.filter(execution=execution, node_id="a").update(output={"v": [1]})
    with django_assert_num_queries(1):  # the execution, its owner and its node runs
        detail = selectors.execution_detail_for_user(user=owner, execution_id=execution.pk)
        ours = ExecutionOutputSerializer(detail).data
    orms = Execution.objects.prefetch_related("node_runs").get(pk=execution.pk)
    assert ours == ExecutionOutputSerializer(orms).data


def test_polling_an_execution_compiles_nothing_through_the_orm(owner, orm_compiles):
    execution = started(owner)
    client = client_for(owner)
    client.get(f"/api/executions/{execution.pk}")  # warm: the first read compiles once
    orm_compiles.clear()
    response = client.get(f"/api/executions/{execution.pk}")
    assert response.status_code == 200
    assert response.json()["node_runs"][1]["node_id"] == "a"
    assert orm_compiles == []
