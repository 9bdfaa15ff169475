"""The transform node outputs its rendered fields."""

from __future__ import annotations

import pytest

from nodes.base import NodeError
from tests.nodes.helpers import run_node


def test_fields_are_rendered_to_native_values():
    result = run_node(
        "transform",
        {
            "fields": {
                "total": "{{ input.body.a + input.body.b }}",
                "label": "sum={{ input.body.a }}",
                "k": [1],
            }
        },
        input={"body": {"a": 1, "b": 2}},
    )
    assert result.output == {"total": 3, "label": "sum=1", "k": [1]}


def test_chained_transform_reads_previous_output():
    result = run_node(
        "transform",
        {"fields": {"total": "{{ nodes.prev.total + 1 }}"}},
        nodes={"prev": {"total": 3}},
        parents=("prev",),
    )
    assert result.output == {"total": 4}


def test_fields_must_be_an_object():
    with pytest.raises(NodeError) as caught:
        run_node("transform", {"fields": ["a"]})
    assert caught.value.code == "node_error"
