"""Output serializers introspect their model once per class; instances keep their own fields."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework import serializers

from autoflow.serializers import BuiltOnceModelSerializer
from executions import services
from executions.api import (
    ExecutionListItemSerializer,
    ExecutionOutputSerializer,
    NodeRunOutputSerializer,
)
from executions.models import Execution, NodeRun
from tests.executions.conftest import make_graph, make_workflow

GRAPH = make_graph([{"id": "a", "type": "test_emit", "params": {"value": 1}}], [("t", "a")])


class Runs(serializers.ModelSerializer[NodeRun]):
    """DRF's own ModelSerializer with the output's fields."""

    class Meta:
        model = NodeRun
        fields = NodeRunOutputSerializer.Meta.fields


def test_fields_are_built_once_per_class_and_copied_per_instance():
    BuiltOnceModelSerializer._built_fields.pop(ExecutionOutputSerializer, None)
    real = serializers.ModelSerializer.build_field
    built: list[str] = []

    def counting(self: Any, field_name: str, *args: Any, **kwargs: Any) -> Any:
        built.append(field_name)
        return real(self, field_name, *args, **kwargs)

    with mock.patch.object(serializers.ModelSerializer, "build_field", counting):
        first, second = ExecutionOutputSerializer(), ExecutionOutputSerializer()
        first_fields, second_fields = first.fields, second.fields

    assert "status" in built
    assert built.count("status") == 1  # the second instance built nothing
    assert list(first_fields) == list(second_fields) == list(ExecutionOutputSerializer.Meta.fields)
    for name in ExecutionOutputSerializer.Meta.fields:
        assert first_fields[name] is not second_fields[name]
        assert first_fields[name].parent is first
        assert second_fields[name].parent is second


def test_copies_are_bound_to_their_own_instance_down_to_a_nested_lists_child():
    first = ExecutionOutputSerializer(context={"who": "first"})
    second = ExecutionOutputSerializer(context={"who": "second"})
    first_runs, second_runs = first.fields["node_runs"], second.fields["node_runs"]
    assert isinstance(first_runs, serializers.ListSerializer)
    assert isinstance(second_runs, serializers.ListSerializer)
    first_child, second_child = first_runs.child, second_runs.child
    assert isinstance(first_child, serializers.Serializer)
    assert isinstance(second_child, serializers.Serializer)
    assert first_child is not second_child
    assert first_child.root is first
    assert second_child.root is second
    assert first_child.context == {"who": "first"}
    assert first_child.fields["status"].context == {"who": "first"}
    assert first_child.fields["status"] is not second_child.fields["status"]
    assert first.fields["created_at"].source_attrs == ["created_at"]
    assert first.fields["created_at"].label == "Created at"


@pytest.mark.django_db
def test_the_output_is_what_drfs_own_field_copies_give(owner):
    class Plain(serializers.ModelSerializer[Execution]):
        node_runs = Runs(many=True, read_only=True)

        class Meta:
            model = Execution
            fields = ExecutionOutputSerializer.Meta.fields

    class PlainItem(serializers.ModelSerializer[Execution]):
        class Meta:
            model = Execution
            fields = ExecutionListItemSerializer.Meta.fields

    workflow = make_workflow(owner, GRAPH)
    first, _ = services.execution_start(
        workflow=workflow, trigger="manual", input={"x": [1]}, user=owner
    )
    NodeRun.objects.filter(execution=first, node_id="a").update(output={"v": 1}, attempts=2)
    # A finished retry: every timestamp, a duration, an error and a run it retried.
    retry, _ = services.execution_start(workflow=workflow, trigger="retry", input={}, user=owner)
    Execution.objects.filter(pk=retry.pk).update(
        status="failed",
        retry_of=first,
        started_at=timezone.now(),
        finished_at=timezone.now() + dt.timedelta(milliseconds=1500),
        duration_ms=1500,
        error={"code": "node_error", "message": "no", "node_id": "a"},
        output={"a": None},
    )
    NodeRun.objects.filter(execution=retry).update(
        status="failed", started_at=timezone.now(), error={"code": "node_error", "message": "no"}
    )
    stored = list(Execution.objects.prefetch_related("node_runs").order_by("created_at"))
    # Every field of these is read by the plan, not by DRF's own fields.
    for cls in (ExecutionOutputSerializer, ExecutionListItemSerializer, NodeRunOutputSerializer):
        assert cls._plan() is not None
    for _ in range(2):  # the second time from the plan and fields built the first time
        for execution in stored:
            assert ExecutionOutputSerializer(execution).data == Plain(execution).data
        listed = ExecutionListItemSerializer(stored, many=True).data
        assert listed == PlainItem(stored, many=True).data
    assert ExecutionOutputSerializer(stored[1]).data["duration_ms"] == 1500
    assert ExecutionOutputSerializer(stored[1]).data["retry_of"] == first.pk


def test_a_field_the_plan_does_not_know_leaves_the_output_to_drf():
    class Described(BuiltOnceModelSerializer[NodeRun]):
        summary = serializers.SerializerMethodField()

        class Meta:
            model = NodeRun
            fields = ("node_id", "summary")

        def get_summary(self, run: NodeRun) -> str:
            return f"{run.node_id}: {run.status}"

    assert Described._plan() is None
    run = NodeRun(node_id="a", status="succeeded")
    assert Described(run).data == {"node_id": "a", "summary": "a: succeeded"}
