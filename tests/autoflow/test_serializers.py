"""Output serializers introspect their model once per class; instances keep their own fields."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from rest_framework import serializers

from autoflow.serializers import BuiltOnceModelSerializer
from executions import services
from executions.api import ExecutionOutputSerializer, NodeRunOutputSerializer
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

    execution, _ = services.execution_start(
        workflow=make_workflow(owner, GRAPH), trigger="manual", input={"x": [1]}, user=owner
    )
    NodeRun.objects.filter(execution=execution, node_id="a").update(output={"v": 1}, attempts=2)
    stored = Execution.objects.prefetch_related("node_runs").get(pk=execution.pk)
    for _ in range(2):  # the second time from the copies of the fields built the first time
        assert ExecutionOutputSerializer(stored).data == Plain(stored).data
