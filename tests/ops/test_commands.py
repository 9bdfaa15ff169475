"""The operator commands: prune, recover, export/import, create_api_key."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.authentication import api_key_hash
from accounts.models import ApiKey, User
from executions.models import Execution, ExecutionLog, NodeRun
from tests.factories import simple_graph
from tests.ops.conftest import add_node_run, make_execution, make_workflow
from tests.servers import BASE_DIR, database_url_from_settings, server_env
from workflows.models import WebhookCall, Workflow

OPS_COMMANDS = [
    "prune_executions",
    "recover_executions",
    "export_workflows",
    "import_workflows",
    "create_api_key",
]


def _run(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.mark.parametrize("name", OPS_COMMANDS)
def test_every_command_has_help(name: str) -> None:
    parser = load_command_class("ops", name).create_parser("manage.py", name)

    text = parser.format_help()

    assert f"usage: manage.py {name}" in text
    assert len(text) > 200


@pytest.mark.django_db
def test_prune_deletes_old_finished_executions_with_their_rows(owner: User) -> None:
    # given
    workflow = make_workflow(owner)
    old_ok = make_execution(workflow, status="succeeded", age=dt.timedelta(days=40))
    add_node_run(old_ok, "log")
    ExecutionLog.objects.create(execution=old_ok, seq=1, message="done")
    old_failed = make_execution(workflow, status="failed", age=dt.timedelta(days=40))
    recent = make_execution(workflow, status="succeeded", age=dt.timedelta(days=2))
    old_running = make_execution(workflow, status="running", age=dt.timedelta(days=40))

    # when: dry run first, then for real, succeeded only
    dry = _run("prune_executions", "--older-than", "30d", "--dry-run")
    out = _run(
        "prune_executions", "--older-than", "30d", "--status", "succeeded", "--batch-size", "1"
    )

    # then
    assert "total: would delete 2" in dry
    assert "succeeded: deleted 1" in out
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert remaining == {old_failed.pk, recent.pk, old_running.pk}
    assert not NodeRun.objects.filter(execution_id=old_ok.pk).exists()
    assert not ExecutionLog.objects.filter(execution_id=old_ok.pk).exists()


@pytest.mark.django_db
def test_prune_without_age_uses_retention_per_status(owner: User, settings: object) -> None:
    # given: succeeded kept 14 days, failed 90
    workflow = make_workflow(owner)
    ok_20_days = make_execution(workflow, status="succeeded", age=dt.timedelta(days=20))
    failed_20_days = make_execution(workflow, status="failed", age=dt.timedelta(days=20))
    failed_100_days = make_execution(workflow, status="failed", age=dt.timedelta(days=100))

    out = _run("prune_executions")

    assert "total: deleted 2" in out
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert remaining == {failed_20_days.pk}
    assert ok_20_days.pk not in remaining
    assert failed_100_days.pk not in remaining


@pytest.mark.django_db
def test_prune_by_retention_drops_webhook_calls_past_the_longest_retention(owner: User) -> None:
    # given: executions are kept at most 90 days (failed)
    workflow = make_workflow(owner)
    now = timezone.now()
    for days in (100, 95, 20):
        WebhookCall.objects.create(
            workflow=workflow, method="POST", status=202, at=now - dt.timedelta(days=days)
        )

    dry = _run("prune_executions", "--dry-run")
    out = _run("prune_executions")

    assert "webhook calls: would delete 2" in dry
    assert "webhook calls: deleted 2" in out
    assert "total: deleted 0" in out  # the executions' total counts executions only
    [kept] = WebhookCall.objects.all()
    assert now - kept.at < dt.timedelta(days=21)


@pytest.mark.django_db
def test_prune_task_applies_the_retention_settings(owner: User, settings: object) -> None:
    from ops.tasks import prune_executions_task

    settings.EXECUTION_RETENTION_DAYS_CANCELLED = 1  # type: ignore[attr-defined]
    workflow = make_workflow(owner)
    make_execution(workflow, status="cancelled", age=dt.timedelta(days=2))
    kept = make_execution(workflow, status="cancelled", age=dt.timedelta(hours=2))

    counts = prune_executions_task()

    assert counts["cancelled"] == 1
    assert counts["webhook_calls"] == 0
    assert list(Execution.objects.values_list("pk", flat=True)) == [kept.pk]


def test_prune_refuses_a_bad_age() -> None:
    with pytest.raises(CommandError, match="30d"):
        _run("prune_executions", "--older-than", "thirty")


@pytest.mark.django_db
def test_recover_executions_reenqueues_runs_whose_lease_lapsed(owner: User) -> None:
    workflow = make_workflow(owner)
    make_execution(
        workflow,
        status="running",
        age=dt.timedelta(minutes=5),
        lease_owner="worker-gone",
        lease_expires_at=timezone.now() - dt.timedelta(minutes=1),
    )
    make_execution(workflow, status="succeeded")

    out = _run("recover_executions", "--json")

    counts = json.loads(out)
    assert counts["lost"] == 1
    assert counts["enqueued"] >= 1


@pytest.mark.django_db
def test_export_then_import_round_trips_exactly(
    owner: User, outsider: User, tmp_path: Path
) -> None:
    # given
    make_workflow(
        owner,
        name="Nightly",
        description="runs at night",
        graph=simple_graph("nightly"),
        tags=["ops", "night"],
        is_public=True,
        active=True,
    )
    make_workflow(owner, name="Plain", graph=simple_graph("plain"))
    make_workflow(outsider, name="Not mine")
    path = tmp_path / "export.json"

    # when
    path.write_text(_run("export_workflows", "--owner", owner.email))
    out = _run("import_workflows", str(path), "--owner", outsider.email)

    # then
    assert "imported 2 workflow(s)" in out
    fields = ("name", "description", "graph", "tags", "is_public", "active")
    exported = sorted(
        Workflow.objects.filter(owner=owner).values(*fields), key=lambda row: row["name"]
    )
    imported = sorted(
        Workflow.objects.filter(owner=outsider).exclude(name="Not mine").values(*fields),
        key=lambda row: row["name"],
    )
    assert imported == exported
    assert all(row["owner"] == owner.email for row in json.loads(path.read_text())["workflows"])


@pytest.mark.django_db
def test_import_validates_graphs_and_imports_nothing_on_failure(
    owner: User, tmp_path: Path
) -> None:
    bad_graph = {"nodes": [{"id": "x", "type": "no-such-type", "params": {}}], "edges": []}
    document = {
        "format": "autoflow.workflows",
        "version": 1,
        "workflows": [
            {"name": "Good", "graph": simple_graph()},
            {"name": "Bad", "graph": bad_graph},
        ],
    }
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))

    with pytest.raises(CommandError, match=r"workflows\[1\] \('Bad'\)"):
        _run("import_workflows", str(path), "--owner", owner.email)

    assert not Workflow.objects.filter(owner=owner).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.e2e  # a real manage.py process
def test_import_exits_non_zero_with_a_clear_message(owner: User, tmp_path: Path) -> None:
    # given: a real manage.py process on the test database, and a file that is not JSON
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    database_url = database_url_from_settings(connection.settings_dict)

    # when
    result = subprocess.run(
        [sys.executable, "manage.py", "import_workflows", str(path), "--owner", owner.email],
        cwd=BASE_DIR,
        env=server_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # then
    assert result.returncode == 1
    assert f"CommandError: {path} is not JSON" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.django_db
def test_create_api_key_prints_a_working_key_once(owner: User) -> None:
    out = _run(
        "create_api_key",
        "--user",
        owner.email,
        "--scopes",
        "workflows:read,executions:read",
        "--name",
        "ci",
        "--expires-days",
        "7",
    )

    raw_key = out.strip()
    api_key = ApiKey.objects.get(user=owner, name="ci")
    assert api_key.key_hash == api_key_hash(raw_key)
    assert raw_key not in api_key.key_hash
    assert api_key.scopes == ["executions:read", "workflows:read"]
    assert api_key.expires_at is not None
    response = Client().get("/api/workflows", HTTP_X_API_KEY=raw_key)
    assert response.status_code == 200


@pytest.mark.django_db
def test_create_api_key_refuses_unknown_scopes_and_users(owner: User) -> None:
    with pytest.raises(CommandError, match="Unknown scope"):
        _run("create_api_key", "--user", owner.email, "--scopes", "everything")
    with pytest.raises(CommandError, match="No user"):
        _run("create_api_key", "--user", "nobody@example.com", "--scopes", "workflows:read")
    assert not ApiKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_prune_by_retention_vacuums_the_execution_tables(owner: User) -> None:
    from ops.services import executions_prune_by_retention

    if connection.vendor != "postgresql":
        pytest.skip("reads PostgreSQL's vacuum statistics")

    workflow = make_workflow(owner)
    make_execution(workflow, status="succeeded", age=dt.timedelta(days=30))

    counts = executions_prune_by_retention()

    assert counts["succeeded"] == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = %s",
            [Execution._meta.db_table],
        )
        (last_vacuum,) = cursor.fetchone()
    assert last_vacuum is not None
    assert timezone.now() - last_vacuum < dt.timedelta(minutes=1)
