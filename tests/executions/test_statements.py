"""The run path's precompiled statements read and write exactly what the ORM would."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from autoflow.statements import insert_objects
from executions import services, statements
from executions.models import NODE_RUN_STATE_FIELDS, Execution, ExecutionLog, NodeRun
from tests.executions.conftest import make_graph, make_workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def queued(owner, *node_ids: str) -> Execution:
    nodes = [{"id": n, "type": "test_emit", "params": {"value": n}} for n in node_ids]
    ids = ["t", *node_ids]
    workflow = make_workflow(owner, make_graph(nodes, list(itertools.pairwise(ids))))
    execution, _ = services.execution_start(
        workflow=workflow, trigger="manual", input={"x": [1, {"y": None}]}, user=owner
    )
    return execution


def test_insert_objects_writes_rows_the_orm_reads_back_unchanged(owner):
    execution = queued(owner)
    now = timezone.now()
    lines = [
        ExecutionLog(execution_id=execution.pk, seq=10 + i, ts=now, message=f"m{i}", data=data)
        for i, data in enumerate([{"k": [1, "two"]}, None, "text"])
    ]
    insert_objects(lines)
    stored = list(ExecutionLog.objects.filter(seq__gte=10).values_list("seq", "message", "data"))
    assert stored == [(10, "m0", {"k": [1, "two"]}), (11, "m1", None), (12, "m2", "text")]
    assert ExecutionLog.objects.get(seq=10).ts == now
    assert not lines[0]._state.adding


def test_insert_objects_with_update_fields_overwrites_only_those_columns(owner):
    execution = queued(owner, "a", "b")
    runs = {r.node_id: r for r in NodeRun.objects.filter(execution=execution)}
    finished = timezone.now()
    changed = [
        # `position` is left at its default here: the upsert must not write it.
        NodeRun(
            pk=runs["b"].pk,
            execution_id=execution.pk,
            node_id="b",
            type="test_emit",
            status="succeeded",
            finished_at=finished,
            output={"value": "b"},
        )
    ]
    insert_objects(changed, update_fields=("status", "finished_at", "output"))
    rows = list(
        NodeRun.objects.filter(execution=execution).values_list(
            "node_id", "position", "status", "output", "finished_at"
        )
    )
    assert rows == [
        ("t", 0, "pending", None, None),
        ("a", 1, "pending", None, None),
        ("b", 2, "succeeded", {"value": "b"}, finished),
    ]


def test_insert_objects_splits_what_exceeds_the_parameter_limit(owner, monkeypatch):
    execution = queued(owner)
    monkeypatch.setattr(connection.ops, "bulk_batch_size", lambda fields, objs: 2)
    lines = [ExecutionLog(execution_id=execution.pk, seq=20 + i, message="m") for i in range(5)]
    with CaptureQueriesContext(connection) as queries:
        insert_objects(lines)
    assert len([q for q in queries if "INSERT" in q["sql"]]) == 3
    assert ExecutionLog.objects.filter(seq__gte=20).count() == 5


def test_claim_takes_a_queued_run_once_and_reads_it_back(owner):
    execution = queued(owner)
    now = timezone.now()
    until = now + dt.timedelta(seconds=30)
    with CaptureQueriesContext(connection) as queries:
        taken = statements.claim_execution(
            execution.pk, lease_owner="me", now=now, lease_expires_at=until
        )
    assert taken is not None
    claimed, runs = taken
    if connection.vendor == "postgresql":  # the node runs ride the claim's statement
        assert len(queries) == 1
    assert runs == statements.node_runs_of(execution.pk)
    assert [run["node_id"] for run in runs] == ["t"]
    assert (claimed.pk, claimed.status, claimed.lease_owner) == (execution.pk, "running", "me")
    assert claimed.input == {"x": [1, {"y": None}]}
    assert (claimed.started_at, claimed.lease_expires_at, claimed.recovery_count) == (now, until, 0)
    assert claimed.created_at == execution.created_at
    assert not claimed._state.adding
    again = statements.claim_execution(
        execution.pk, lease_owner="you", now=now, lease_expires_at=until
    )
    assert again is None
    assert Execution.objects.get(pk=execution.pk).lease_owner == "me"


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="a PostgreSQL setting")
@pytest.mark.django_db(transaction=True)
def test_a_claims_commit_alone_skips_waiting_for_the_disk(owner):
    execution = queued(owner)
    now = timezone.now()
    until = now + dt.timedelta(seconds=30)
    with transaction.atomic():
        taken = statements.claim_execution(
            execution.pk, lease_owner="me", now=now, lease_expires_at=until
        )
        # The claim's own transaction commits without waiting for its WAL to be flushed...
        assert _synchronous_commit() == "off"
    assert taken is not None
    # ...and no later one on this session: the run's other writes still wait for the disk.
    assert _synchronous_commit() == "on"
    statements.claim_execution(execution.pk, lease_owner="you", now=now, lease_expires_at=until)
    assert _synchronous_commit() == "on"
    assert Execution.objects.get(pk=execution.pk).lease_owner == "me"


def test_claim_takes_over_a_lapsed_lease_counting_a_recovery_and_waits_for_a_due_wake(owner):
    execution = queued(owner)
    now = timezone.now()
    started = now - dt.timedelta(minutes=5)
    Execution.objects.filter(pk=execution.pk).update(
        status="running", lease_owner="gone", lease_expires_at=now, started_at=started
    )
    later = now + dt.timedelta(seconds=1)
    taken = statements.claim_execution(
        execution.pk, lease_owner="me", now=later, lease_expires_at=later
    )
    assert taken is not None
    assert (taken[0].recovery_count, taken[0].started_at) == (1, started)

    Execution.objects.filter(pk=execution.pk).update(status="waiting", wake_at=later)
    early = statements.claim_execution(
        execution.pk, lease_owner="x", now=now, lease_expires_at=later
    )
    assert early is None
    due = statements.claim_execution(
        execution.pk, lease_owner="x", now=later, lease_expires_at=later
    )
    assert due is not None
    assert (due[0].recovery_count, due[0].wake_at) == (1, None)


def test_claim_reads_back_every_node_run_in_graph_order_with_its_values(owner):
    execution = queued(owner, "b", "a")
    NodeRun.objects.filter(execution=execution, node_id="a").update(
        output={"v": [1]}, cached=True, status="succeeded", attempts=2
    )
    now = timezone.now()
    taken = statements.claim_execution(
        execution.pk, lease_owner="me", now=now, lease_expires_at=now
    )
    assert taken is not None
    assert taken[1] == statements.node_runs_of(execution.pk)
    assert [run["node_id"] for run in taken[1]] == ["t", "b", "a"]
    assert (taken[1][2]["output"], taken[1][2]["attempts"]) == ({"v": [1]}, 2)


def test_update_execution_reserves_seqs_and_honours_the_lease(owner):
    execution = queued(owner)
    Execution.objects.filter(pk=execution.pk).update(status="running", lease_owner="me")
    result = statements.update_execution(
        execution.pk, log_lines=3, changes={"output": {"a": 1}}, lease_owner="me"
    )
    assert result == (5, False)
    assert (
        statements.update_execution(execution.pk, log_lines=1, changes={}, lease_owner="x") is None
    )
    Execution.objects.filter(pk=execution.pk).update(cancel_requested=True)
    assert statements.update_execution(execution.pk, log_lines=0, changes={}) == (5, True)
    stored = Execution.objects.get(pk=execution.pk)
    assert (stored.output, stored.next_log_seq) == ({"a": 1}, 5)


def _running(owner, *node_ids: str) -> Execution:
    execution = queued(owner, *node_ids)
    Execution.objects.filter(pk=execution.pk).update(status="running", lease_owner="me")
    return execution


def _state(execution: Execution, node_id: str, **values: Any) -> dict[str, Any]:
    """A node run's new state as the run store writes it: every state field, by id."""
    stored = NodeRun.objects.get(execution=execution, node_id=node_id)
    state = {name: getattr(stored, name) for name in NODE_RUN_STATE_FIELDS}
    identity = {"id": stored.pk, "execution_id": execution.pk, "node_id": node_id}
    return {**identity, "type": "test_emit", **state, **values}


def _line(execution: Execution, message: str, **values: Any) -> dict[str, Any]:
    line = {"execution_id": execution.pk, "ts": timezone.now(), "level": "info"}
    return {**line, "node_id": None, "message": message, "data": None, **values}


def test_write_run_numbers_lines_updates_runs_and_the_row_in_one_statement(owner):
    execution = _running(owner, "a", "b")
    finished = timezone.now()
    lines = [
        _line(execution, "one", ts=finished, data={"k": [1], "s": 'é"\\'}),
        _line(execution, "two", ts=finished, level="error", node_id="a"),
    ]
    runs = [
        _state(
            execution, "b", status="succeeded", attempts=1, output={"v": "b"}, finished_at=finished
        )
    ]
    with CaptureQueriesContext(connection) as queries:
        returned = statements.write_run(
            execution.pk,
            changes={"output": {"done": True}},
            logs=lines,
            node_runs=runs,
            lease_owner="me",
        )
    assert returned == (4, False)  # the queued line took seq 1
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    assert [line["seq"] for line in lines] == [2, 3]
    stored = list(
        ExecutionLog.objects.filter(execution=execution)
        .order_by("seq")
        .values_list("seq", "level", "node_id", "message", "data", "ts")
    )
    assert stored[1:] == [
        (2, "info", None, "one", {"k": [1], "s": 'é"\\'}, finished),
        (3, "error", "a", "two", None, finished),
    ]
    state = list(
        NodeRun.objects.filter(execution=execution).values_list(
            "node_id", "position", "status", "attempts", "output", "finished_at"
        )
    )
    assert state == [
        ("t", 0, "pending", 0, None, None),
        ("a", 1, "pending", 0, None, None),
        ("b", 2, "succeeded", 1, {"v": "b"}, finished),
    ]
    row = Execution.objects.get(pk=execution.pk)
    assert (row.output, row.next_log_seq) == ({"done": True}, 4)


@pytest.mark.parametrize("output", ["text", 3, True, [1, "x"], {"nested": {"deep": None}}, None])
def test_write_run_stores_any_json_output_as_the_orm_would(owner, output):
    execution = _running(owner, "a")
    statements.write_run(
        execution.pk, changes={}, node_runs=[_state(execution, "a", output=output)]
    )
    stored = NodeRun.objects.get(execution=execution, node_id="a")
    assert stored.output == output
    # None is SQL NULL, as the ORM stores it, not JSON null.
    assert NodeRun.objects.filter(pk=stored.pk, output__isnull=True).exists() is (output is None)


def test_write_run_writes_nothing_without_the_lease(owner):
    execution = _running(owner, "a")
    line = _line(execution, "late")
    run = _state(execution, "a", status="succeeded")
    returned = statements.write_run(
        execution.pk, changes={"status": "succeeded"}, logs=[line], node_runs=[run], lease_owner="x"
    )
    assert returned is None
    assert not ExecutionLog.objects.filter(message="late").exists()
    assert NodeRun.objects.get(pk=run["id"]).status == "pending"
    assert Execution.objects.get(pk=execution.pk).status == "running"


def test_write_run_takes_thousands_of_lines_in_one_statement(owner):
    execution = _running(owner, "a")
    lines = [_line(execution, f"m{i}") for i in range(5_000)]
    with CaptureQueriesContext(connection) as queries:
        returned = statements.write_run(execution.pk, changes={}, logs=lines, lease_owner="me")
    assert returned == (5_002, False)
    if connection.vendor == "postgresql":
        assert len(queries) == 1
    seqs = ExecutionLog.objects.filter(message__startswith="m").values_list("seq", flat=True)
    assert list(seqs.order_by("seq")) == list(range(2, 5_002))


def test_write_run_stores_a_nul_or_a_surrogate_in_diagnostic_text_as_replacements(owner):
    # Neither backend stores a lone surrogate; PostgreSQL stores no NUL either.
    execution = _running(owner, "a")
    error = {"code": "http_status", "message": "server said a\x00b\ud800"}
    line = _line(execution, "Node failed: a\x00b", data={"k\x00": ["\udc00"]})
    run = _state(execution, "a", status="failed", error=error)
    returned = statements.write_run(
        execution.pk, changes={}, logs=[line], node_runs=[run], lease_owner="me"
    )
    assert returned == (3, False)
    stored_line = ExecutionLog.objects.get(execution=execution, seq=2)
    assert stored_line.message == "Node failed: a\ufffdb"
    assert stored_line.data == {"k\ufffd": ["\ufffd\ufffd\ufffd"]}
    stored_error = NodeRun.objects.get(pk=run["id"]).error
    assert stored_error == {**error, "message": "server said a\ufffdb\ufffd\ufffd\ufffd"}
    # What is published is what is stored.
    assert line["message"] == "Node failed: a\ufffdb"


def test_starting_an_execution_inserts_its_rows_in_one_statement(owner):
    workflow = make_workflow(owner, make_graph([{"id": "a", "type": "test_emit"}], [("t", "a")]))
    services.execution_start(workflow=workflow, trigger="manual", input={}, user=owner)  # warm
    with CaptureQueriesContext(connection) as queries:
        execution, _ = services.execution_start(
            workflow=workflow, trigger="manual", input={"n": 1}, user=owner
        )
    if connection.vendor == "postgresql":
        assert [q["sql"].split()[0] for q in queries] == ["WITH"]
    assert list(NodeRun.objects.filter(execution=execution).values_list("node_id", "status")) == [
        ("t", "pending"),
        ("a", "pending"),
    ]
    assert list(ExecutionLog.objects.filter(execution=execution).values_list("seq", "message")) == [
        (1, "Execution queued")
    ]
    assert Execution.objects.get(pk=execution.pk).input == {"n": 1}


def test_a_guarded_start_writes_only_while_the_workflow_holds_what_was_read(owner):
    workflow = make_workflow(owner, make_graph([{"id": "a", "type": "test_emit"}], [("t", "a")]))
    read = {"id": workflow.pk, "version": workflow.version, "active": workflow.active}
    services.execution_start(workflow=workflow, trigger="manual", input={}, user=owner)  # warm
    Execution.objects.all().delete()

    with CaptureQueriesContext(connection) as queries:
        started, _ = services.execution_start(
            workflow=workflow, trigger="manual", input={}, user=owner, only_if=read
        )
    Workflow.objects.filter(pk=workflow.pk).update(version=workflow.version + 1)
    with pytest.raises(services.WorkflowChanged):
        services.execution_start(
            workflow=workflow, trigger="manual", input={}, user=owner, only_if=read
        )

    if connection.vendor == "postgresql":
        assert [q["sql"].split()[0] for q in queries] == ["WITH"]
    assert list(Execution.objects.filter(workflow=workflow).values_list("pk", flat=True)) == [
        started.pk
    ]
    assert NodeRun.objects.filter(execution__workflow=workflow).count() == 2
    assert ExecutionLog.objects.filter(execution__workflow=workflow).count() == 1


def test_node_runs_of_lists_the_runs_in_graph_order_with_their_values(owner):
    execution = queued(owner, "b", "a")
    NodeRun.objects.filter(execution=execution, node_id="a").update(output={"v": [1]}, cached=True)
    rows = statements.node_runs_of(execution.pk)
    assert [row["node_id"] for row in rows] == ["t", "b", "a"]
    last = rows[-1]
    assert (last["output"], last["cached"], last["status"]) == ({"v": [1]}, True, "pending")
    assert last["id"] == NodeRun.objects.get(execution=execution, node_id="a").pk
    assert statements.node_runs_of(Execution().pk) == []


def test_log_lines_of_reads_a_window_of_lines_in_order_in_one_statement(owner):
    execution = queued(owner, "a")  # its first line, seq 1, is stored with it
    ExecutionLog.objects.bulk_create(
        ExecutionLog(execution=execution, seq=seq, node_id="a", message=f"m{seq}", data={"n": seq})
        for seq in range(2, 8)
    )

    with CaptureQueriesContext(connection) as queries:
        rows = statements.log_lines_of(execution.pk, after_seq=2, up_to_seq=6, limit=3)

    assert len(queries) == 1
    assert [(row["seq"], row["message"], row["data"]) for row in rows] == [
        (3, "m3", {"n": 3}),
        (4, "m4", {"n": 4}),
        (5, "m5", {"n": 5}),
    ]
    stored = ExecutionLog.objects.get(execution=execution, seq=3)
    assert (rows[0]["ts"], rows[0]["level"], rows[0]["node_id"]) == (stored.ts, stored.level, "a")
    assert statements.log_lines_of(execution.pk, after_seq=7, up_to_seq=9, limit=10) == []


def _values(instance: object) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}  # type: ignore[attr-defined]


def test_execution_and_owner_reads_the_row_the_orm_reads_and_its_workflows_owner(owner):
    execution = queued(owner, "a")
    Execution.objects.filter(pk=execution.pk).update(
        status="failed", error={"code": "x", "message": "é"}, duration_ms=7
    )
    found = statements.execution_and_owner(str(execution.pk))
    assert found is not None
    row, owner_id = found
    assert _values(row) == _values(Execution.objects.get(pk=execution.pk))
    assert owner_id == owner.pk
    assert statements.execution_and_owner(Execution().pk) is None
    assert statements.execution_and_owner("not-a-uuid") is None


def test_execution_owner_and_node_runs_read_the_orms_instances_in_one_statement(owner):
    execution = queued(owner, "b", "a")
    NodeRun.objects.filter(execution=execution, node_id="a").update(output={"v": [1]}, cached=True)
    with CaptureQueriesContext(connection) as queries:
        found = statements.execution_owner_and_node_runs(str(execution.pk))
    assert len(queries) == 1
    assert found is not None
    row, owner_id, runs = found
    assert _values(row) == _values(Execution.objects.get(pk=execution.pk))
    assert owner_id == owner.pk
    expected = NodeRun.objects.filter(execution=execution).order_by("position")
    assert [_values(run) for run in runs] == [_values(run) for run in expected]
    assert [run.node_id for run in runs] == ["t", "b", "a"]
    assert statements.execution_owner_and_node_runs(Execution().pk) is None
    assert statements.execution_owner_and_node_runs("not-a-uuid") is None
