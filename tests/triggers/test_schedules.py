"""Schedules: beat's periodic task follows the workflow; the task starts `schedule` runs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from accounts.models import User
from executions.models import Execution
from tests.triggers.conftest import trigger_graph
from triggers.services import schedule_task_name
from triggers.tasks import schedule_fire_task
from workflows.models import Workflow
from workflows.services import workflow_create, workflow_delete, workflow_update

pytestmark = pytest.mark.django_db(transaction=True)


def _scheduled(
    owner: User, *, cron: str = "*/5 * * * *", active: bool = True, **extra: Any
) -> Workflow:
    return workflow_create(
        owner=owner,
        name="nightly",
        graph=trigger_graph({"mode": "schedule", "cron": cron, **extra}, {"ok": "yes"}),
        active=active,
    )


def _task(workflow: Workflow) -> PeriodicTask | None:
    return PeriodicTask.objects.filter(name=schedule_task_name(workflow.pk)).first()


def test_activation_creates_an_enabled_periodic_task(owner: User) -> None:
    # given an inactive scheduled workflow
    workflow = _scheduled(owner, cron="30 2 * * 1-5", active=False, timezone="Europe/Paris")
    assert _task(workflow) is None

    # when it is activated
    workflow = workflow_update(
        workflow=workflow, by=owner, expected_version=1, changes={"active": True}
    )

    # then beat has its task, with the cron and time zone
    task = _task(workflow)
    assert task is not None
    assert task.enabled
    assert task.task == "triggers.tasks.schedule_fire_task"
    assert json.loads(task.kwargs) == {"workflow_id": str(workflow.pk)}
    crontab = task.crontab
    assert crontab is not None
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("30", "2", "1-5")
    assert (crontab.day_of_month, crontab.month_of_year) == ("*", "*")
    assert str(crontab.timezone) == "Europe/Paris"


def test_changing_the_cron_updates_the_task(owner: User) -> None:
    workflow = _scheduled(owner, cron="*/5 * * * *")
    graph = trigger_graph({"mode": "schedule", "cron": "0 9 * * *"}, {"ok": "yes"})

    workflow_update(workflow=workflow, by=owner, expected_version=1, changes={"graph": graph})

    task = _task(workflow)
    assert task is not None
    assert task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour) == ("0", "9")
    assert PeriodicTask.objects.filter(name__startswith="workflow-schedule:").count() == 1


def test_changing_the_mode_removes_the_task(owner: User) -> None:
    workflow = _scheduled(owner)
    graph = trigger_graph({"mode": "manual"}, {"ok": "yes"})

    workflow_update(workflow=workflow, by=owner, expected_version=1, changes={"graph": graph})

    assert _task(workflow) is None


def test_deactivation_and_delete_remove_the_task(owner: User) -> None:
    first = _scheduled(owner)
    second = _scheduled(owner)
    assert _task(first) is not None
    assert _task(second) is not None

    workflow_update(workflow=first, by=owner, expected_version=1, changes={"active": False})
    workflow_delete(workflow=second, by=owner)

    assert _task(first) is None
    assert _task(second) is None


def test_the_task_starts_one_schedule_execution(owner: User) -> None:
    workflow = _scheduled(owner)
    fired_at = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC).isoformat()

    execution_id = schedule_fire_task(str(workflow.pk), fired_at)
    # a duplicate delivery of the same firing starts nothing new
    again = schedule_fire_task(str(workflow.pk), fired_at)

    assert execution_id is not None
    assert again == execution_id
    execution = Execution.objects.get(pk=execution_id)
    assert execution.trigger == "schedule"
    assert execution.input == {"scheduled_at": fired_at}
    assert execution.workflow_id == workflow.pk
    assert Execution.objects.filter(workflow=workflow).count() == 1


def test_beat_entry_sends_the_task_with_the_workflow(owner: User) -> None:
    # given beat's own database scheduler reading the task we stored
    from django_celery_beat.schedulers import ModelEntry

    workflow = _scheduled(owner)
    task = _task(workflow)
    assert task is not None
    entry = ModelEntry(task, app=None)

    # when beat would send it (the entry's task with its kwargs), an execution starts
    execution_id = schedule_fire_task(*entry.args, **entry.kwargs)

    assert execution_id is not None
    execution = Execution.objects.get(pk=execution_id)
    assert execution.trigger == "schedule"
    assert dt.datetime.fromisoformat(execution.input["scheduled_at"]).second == 0


def test_the_task_does_nothing_for_an_inactive_or_unscheduled_workflow(owner: User) -> None:
    inactive = _scheduled(owner, active=False)
    manual = workflow_create(
        owner=owner, name="m", graph=trigger_graph({"mode": "manual"}, {"a": "b"}), active=True
    )

    assert schedule_fire_task(str(inactive.pk)) is None
    assert schedule_fire_task(str(manual.pk)) is None
    assert Execution.objects.count() == 0


def test_an_invalid_cron_is_refused_on_save(owner: User) -> None:
    from autoflow.exceptions import GraphInvalid

    with pytest.raises(GraphInvalid):
        _scheduled(owner, cron="61 * * * *")
    assert PeriodicTask.objects.filter(name__startswith="workflow-schedule:").count() == 0
