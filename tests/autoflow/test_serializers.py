"""Output serializers introspect their model once per class; instances keep their own fields."""

from __future__ import annotations

from typing import Any
from unittest import mock

from rest_framework import serializers

from autoflow.serializers import BuiltOnceModelSerializer
from executions.api import ExecutionOutputSerializer


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
