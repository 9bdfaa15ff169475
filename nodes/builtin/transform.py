"""The `transform` node: build an object from templated fields."""

from __future__ import annotations

from typing import Any

from nodes.base import Node, NodeContext, NodeParams, NodeResult
from nodes.registry import register


class TransformParams(NodeParams):
    fields: dict[str, Any]


@register
class TransformNode(Node):
    """Output `fields`, rendered."""

    type = "transform"
    Params = TransformParams

    def run(self, ctx: NodeContext, params: TransformParams) -> NodeResult:
        return NodeResult(output=dict(params.fields))
