"""The `debug` node: log a message and pass its input on."""

from __future__ import annotations

from typing import Any, Literal

from nodes.base import Node, NodeContext, NodeParams, NodeResult
from nodes.expressions import to_plain
from nodes.registry import register


class DebugParams(NodeParams):
    message: Any = ""
    level: Literal["debug", "info", "warning", "error"] = "info"


@register
class DebugNode(Node):
    """Log `message` at `level`; output its parent's output (a map by parent id for several)."""

    type = "debug"
    Params = DebugParams

    def run(self, ctx: NodeContext, params: DebugParams) -> NodeResult:
        message = params.message if isinstance(params.message, str) else repr(params.message)
        ctx.log(params.level, message, None)
        parents = [parent for parent in ctx.parents if parent in ctx.nodes]
        if len(parents) == 1:
            return NodeResult(output=to_plain(ctx.nodes[parents[0]]))
        if not parents:
            return NodeResult(output=None)
        return NodeResult(output={parent: to_plain(ctx.nodes[parent]) for parent in parents})
