"""The webhook call log: calls queued in memory, written in one statement by its own thread."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.db import OperationalError

from accounts.models import User
from tests.executions.conftest import wait_for
from tests.triggers.conftest import webhook_workflow
from triggers import call_log as call_log_module
from triggers.call_log import CallLog
from workflows.models import WebhookCall

pytestmark = pytest.mark.django_db(transaction=True)
NEVER = 3600.0  # a writer thread that never wakes within a test


def _add(log: CallLog, workflow_id: Any, status: int = 202) -> None:
    log.add(workflow_id=workflow_id, method="POST", status=status, execution_id=None)


def test_calls_wait_in_memory_then_one_statement_writes_them_all(
    owner: User, django_assert_num_queries: Any
) -> None:
    workflow = webhook_workflow(owner)
    log = CallLog(flush_seconds=NEVER)
    for status in (202, 404, 405):
        _add(log, workflow.pk, status)

    assert not WebhookCall.objects.exists()
    with django_assert_num_queries(1):
        written = log.flush()

    assert written == 3
    assert sorted(WebhookCall.objects.values_list("status", flat=True)) == [202, 404, 405]
    assert log.flush() == 0


def test_the_writer_thread_writes_shortly_after_a_call(owner: User) -> None:
    workflow = webhook_workflow(owner)
    log = CallLog(flush_seconds=0.05)

    _add(log, workflow.pk)
    _add(log, workflow.pk, 200)

    calls = wait_for(lambda: WebhookCall.objects.filter(workflow=workflow).count() == 2, timeout=5)
    assert calls
    # and again after it went quiet
    _add(log, workflow.pk, 422)
    wait_for(lambda: WebhookCall.objects.filter(status=422).exists(), timeout=5)


def test_calls_of_a_workflow_deleted_meanwhile_are_dropped_not_the_rest(owner: User) -> None:
    kept = webhook_workflow(owner)
    gone = webhook_workflow(owner)
    log = CallLog(flush_seconds=NEVER)
    _add(log, kept.pk)
    _add(log, gone.pk)
    gone.delete()

    assert log.flush() == 1

    assert list(WebhookCall.objects.values_list("workflow_id", flat=True)) == [kept.pk]


def test_calls_are_kept_while_the_database_refuses_them(
    owner: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = webhook_workflow(owner)
    log = CallLog(flush_seconds=NEVER)
    _add(log, workflow.pk)
    real_insert = call_log_module.insert_objects

    def refused(objs: Any) -> None:
        raise OperationalError("the database is down")

    monkeypatch.setattr(call_log_module, "insert_objects", refused)
    with pytest.raises(OperationalError):
        log.flush()
    monkeypatch.setattr(call_log_module, "insert_objects", real_insert)

    assert not WebhookCall.objects.exists()
    assert log.flush() == 1
    assert WebhookCall.objects.filter(workflow=workflow).count() == 1


def test_a_full_log_drops_new_calls_and_says_so(
    owner: User, caplog: pytest.LogCaptureFixture
) -> None:
    workflow = webhook_workflow(owner)
    log = CallLog(flush_seconds=NEVER, max_pending=2)

    with caplog.at_level(logging.WARNING, logger="triggers.call_log"):
        for status in (202, 200, 404):
            _add(log, workflow.pk, status)

    assert log.flush() == 2
    assert sorted(WebhookCall.objects.values_list("status", flat=True)) == [200, 202]
    assert "went unrecorded" in caplog.text


def test_the_writer_thread_survives_a_batch_it_cannot_write(
    owner: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    workflow = webhook_workflow(owner)
    log = CallLog(flush_seconds=0.05)
    real_write = call_log_module._write
    failures: list[int] = []

    def fails_once(calls: Any) -> int:
        if not failures:
            failures.append(len(calls))
            raise RuntimeError("a bug in one batch")
        return real_write(calls)

    monkeypatch.setattr(call_log_module, "_write", fails_once)
    with caplog.at_level(logging.ERROR, logger="triggers.call_log"):
        _add(log, workflow.pk, 404)
        wait_for(lambda: failures, timeout=5)
        _add(log, workflow.pk, 202)

        wait_for(lambda: WebhookCall.objects.filter(status=202).exists(), timeout=5)

    assert "a batch of calls was lost" in caplog.text
    assert not WebhookCall.objects.filter(status=404).exists()
