"""Serializer helpers shared by the apps' APIs."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, TypeVar

from django.db.models import Model
from rest_framework import serializers
from rest_framework.fields import Field

M = TypeVar("M", bound=Model)


class BuiltOnceModelSerializer(serializers.ModelSerializer[M]):
    """A ModelSerializer that introspects its model once per class, not once per instance.

    DRF builds every field from the model's metadata each time a serializer's fields are
    first read: 5 % of the web process's CPU while clients poll executions. Each instance still
    gets its own deep copies, since DRF binds fields to their parent; for an execution with its
    node runs that is 280 µs against 500 µs for the build.
    """

    _built_fields: ClassVar[dict[type[Any], dict[str, Field[Any, Any, Any, Any]]]] = {}

    def get_fields(self) -> dict[str, Field[Any, Any, Any, Any]]:
        cls = type(self)
        built = BuiltOnceModelSerializer._built_fields.get(cls)
        if built is None:
            # A race builds it twice, harmlessly: the result is the same.
            built = BuiltOnceModelSerializer._built_fields[cls] = super().get_fields()
        return copy.deepcopy(built)
