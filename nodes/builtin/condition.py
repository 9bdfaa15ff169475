"""The `condition` node: evaluate an expression and take the `true` or `false` branch."""

from __future__ import annotations

from typing import Any

from nodes.base import Node, NodeContext, NodeParams, NodeResult
from nodes.registry import register

# Strings a template renders for "no" (a partial template always renders a string).
FALSE_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})


class ConditionParams(NodeParams):
    expression: Any


def is_truthy(value: Any) -> bool:
    """Decide a branch: Python truthiness, except that strings like "false" or "0" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_STRINGS
    return bool(value)


@register
class ConditionNode(Node):
    """Output `{result}` and the branch its truthiness picks."""

    type = "condition"
    Params = ConditionParams

    def run(self, ctx: NodeContext, params: ConditionParams) -> NodeResult:
        result = is_truthy(params.expression)
        return NodeResult(output={"result": result}, branch="true" if result else "false")
