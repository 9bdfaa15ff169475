"""Execution admin: constant query count per page, filters, cancel/retry and execute-now."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from executions.models import Execution
from tests.factories import UserFactory
from tests.ops.conftest import make_execution, make_workflow


def _admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def _changelist_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get("/admin/executions/execution/")
    assert response.status_code == 200
    return len(captured.captured_queries)


@pytest.mark.django_db
def test_changelist_query_count_does_not_grow_with_rows(admin_user: User) -> None:
    # given: one page of 1 row, then one page of 100 rows over several owners and workflows
    client = _admin_client(admin_user)
    first_owner = UserFactory.create()
    make_execution(make_workflow(first_owner))
    client.get("/admin/executions/execution/")  # warm the session and content types
    one_row = _changelist_queries(client)
    workflows = [make_workflow(UserFactory.create()) for _ in range(10)]
    for index in range(99):
        make_execution(workflows[index % 10], status="failed")

    # when
    hundred_rows = _changelist_queries(client)

    # then
    assert Execution.objects.count() == 100
    assert hundred_rows == one_row


@pytest.mark.django_db
def test_changelist_filters_by_status_workflow_and_owner(admin_user: User, owner: User) -> None:
    client = _admin_client(admin_user)
    workflow = make_workflow(owner)
    other = make_workflow(UserFactory.create())
    mine = make_execution(workflow, status="failed")
    make_execution(workflow, status="succeeded")
    make_execution(other, status="failed")

    by_owner = client.get(f"/admin/executions/execution/?owner={owner.pk}&status=failed")
    by_workflow = client.get(f"/admin/executions/execution/?workflow={other.pk}")

    assert list(by_owner.context["cl"].result_list) == [mine]
    assert {row.workflow_id for row in by_workflow.context["cl"].result_list} == {other.pk}
    assert f"/executions/{mine.pk}/live" in by_owner.content.decode()


@pytest.mark.django_db
def test_cancel_and_retry_actions_go_through_the_services(admin_user: User, owner: User) -> None:
    # given
    client = _admin_client(admin_user)
    workflow = make_workflow(owner)
    queued = make_execution(workflow, status="queued")
    failed = make_execution(workflow, status="failed", age=dt.timedelta(minutes=1))
    finished = make_execution(workflow, status="succeeded")

    # when
    client.post(
        "/admin/executions/execution/",
        {"action": "cancel_executions", "_selected_action": [str(queued.pk), str(finished.pk)]},
    )
    client.post(
        "/admin/executions/execution/",
        {"action": "retry_executions", "_selected_action": [str(failed.pk)]},
    )

    # then
    queued.refresh_from_db()
    finished.refresh_from_db()
    assert queued.status == "cancelled"
    assert queued.logs.filter(message__contains=admin_user.email).exists()
    assert finished.status == "succeeded"
    retry = Execution.objects.get(retry_of=failed)
    assert retry.status == "queued"
    assert retry.trigger == "retry"
    assert retry.created_by == admin_user


@pytest.mark.django_db
def test_workflow_execute_now_action_queues_a_manual_execution(
    admin_user: User, owner: User
) -> None:
    client = _admin_client(admin_user)
    workflow = make_workflow(owner)

    response = client.post(
        "/admin/workflows/workflow/",
        {"action": "workflow_execute_now", "_selected_action": [str(workflow.pk)]},
        follow=True,
    )

    execution = Execution.objects.get(workflow=workflow)
    assert execution.trigger == "manual"
    assert execution.created_by == admin_user
    assert execution.workflow_version == workflow.version
    assert str(execution.pk) in response.content.decode()
