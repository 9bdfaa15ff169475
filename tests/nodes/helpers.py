"""Running a node the way the engine does: render params, validate strictly, run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nodes.base import NodeContext, NodeResult
from nodes.expressions import make_scope
from nodes.params import render_and_validate
from nodes.registry import get_node_class


class LogCollector:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, Any]] = []

    def __call__(self, level: str, message: str, data: Mapping[str, Any] | None) -> None:
        self.lines.append((level, message, data))


def run_node(
    type_name: str,
    params: Mapping[str, Any],
    *,
    input: Any = None,
    nodes: Mapping[str, Any] | None = None,
    parents: tuple[str, ...] = (),
    credential: Mapping[str, Any] | None = None,
    log: LogCollector | None = None,
    timeout_seconds: float | None = None,
) -> NodeResult:
    node_class = get_node_class(type_name)
    assert node_class is not None
    nodes = nodes or {}
    scope = make_scope(input if input is not None else {}, nodes)
    validated = render_and_validate(node_class, params, scope)
    context = NodeContext(
        execution_id="e1",
        node_id="n1",
        input=input if input is not None else {},
        nodes=nodes,
        parents=parents,
        credential=credential,
        log=log or LogCollector(),
        timeout_seconds=timeout_seconds,
    )
    return node_class().run(context, validated)
