"""Read a workflow's trigger settings from its graph (no ORM)."""

from __future__ import annotations

from typing import Any

import pydantic

from nodes.builtin.trigger import TriggerParams
from workflows.graph import TRIGGER_TYPE


def trigger_params(graph: Any) -> TriggerParams | None:
    """Return the trigger node's params, or None when the graph has no readable trigger."""
    nodes = graph.get("nodes") if isinstance(graph, dict) else None
    for node in nodes if isinstance(nodes, list) else []:
        if isinstance(node, dict) and node.get("type") == TRIGGER_TYPE:
            try:
                return TriggerParams.model_validate(node.get("params") or {})
            except pydantic.ValidationError:
                return None
    return None
