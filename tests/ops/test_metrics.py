"""`GET /metrics`: access rules and figures that match the database."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.conf import LazySettings
from django.test import Client
from django.utils import timezone

from accounts.models import User
from tests.ops.conftest import add_node_run, make_execution, make_workflow


def _value(text: str, sample: str) -> float:
    """The value of one exact sample line (`name{labels}`) in Prometheus text."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{sample} missing from:\n{text}"
    return float(match.group(1))


def test_metrics_without_token_answers_loopback_only(db: None, settings: LazySettings) -> None:
    # given
    settings.METRICS_TOKEN = ""
    client = Client()
    # when
    local = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    remote = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    # then
    assert local.status_code == 200
    assert local["Content-Type"].startswith("text/plain")
    assert remote.status_code == 404
    assert remote.json()["error"]["code"] == "not_found"


def test_metrics_with_token_needs_bearer(db: None, settings: LazySettings) -> None:
    settings.METRICS_TOKEN = "s3cret-metrics"
    client = Client()

    missing = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope", REMOTE_ADDR="127.0.0.1")
    right = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics", REMOTE_ADDR="203.0.113.9"
    )

    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "not_authenticated"
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "token_invalid"
    assert right.status_code == 200
    assert "autoflow_executions" in right.content.decode()


@pytest.mark.django_db
def test_metrics_figures_come_from_the_database(owner: User, settings: LazySettings) -> None:
    # given: 2 succeeded, 1 failed, 2 running (one with a lapsed lease), node runs with retries
    settings.METRICS_TOKEN = ""
    workflow = make_workflow(owner)
    now = timezone.now()
    for _ in range(2):
        make_execution(workflow, status="succeeded")
    failed = make_execution(workflow, status="failed")
    make_execution(
        workflow,
        status="running",
        age=dt.timedelta(minutes=10),
        lease_expires_at=now - dt.timedelta(seconds=30),
    )
    make_execution(
        workflow,
        status="running",
        age=dt.timedelta(minutes=1),
        lease_expires_at=now + dt.timedelta(seconds=30),
        recovery_count=2,
    )
    add_node_run(failed, "get", type="http", status="failed", attempts=3)
    add_node_run(failed, "log", type="debug", status="succeeded", attempts=1)

    # when
    text = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    # then
    assert _value(text, 'autoflow_executions{status="succeeded"}') == 2
    assert _value(text, 'autoflow_executions{status="failed"}') == 1
    assert _value(text, 'autoflow_executions{status="cancelled"}') == 0
    assert _value(text, "autoflow_executions_running") == 2
    assert _value(text, "autoflow_executions_stale_heartbeat") == 1
    assert 590 <= _value(text, "autoflow_oldest_running_execution_age_seconds") <= 700
    assert _value(text, 'autoflow_node_runs{status="failed",type="http"}') == 1
    assert _value(text, 'autoflow_retries{kind="node_attempt"}') == 2
    assert _value(text, 'autoflow_retries{kind="recovery"}') == 2
    assert _value(text, "autoflow_metrics_database_up") == 1
    assert _value(text, "autoflow_queue_depth") >= 0


def test_metrics_count_requests_by_view(db: None, settings: LazySettings) -> None:
    settings.METRICS_TOKEN = ""
    client = Client()
    sample = 'autoflow_http_requests_total{method="GET",status="200",view="health"}'
    before_text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    before = _value(before_text, sample) if sample in before_text else 0.0

    for _ in range(3):
        client.get("/health")
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()

    assert _value(text, sample) == before + 3
    assert 'autoflow_http_request_duration_seconds_count{view="health"}' in text
