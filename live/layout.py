"""Lay a workflow graph out in dependency layers for the live page (no ORM, no Django)."""

from __future__ import annotations

from typing import Any, TypedDict

NODE_WIDTH = 180
NODE_HEIGHT = 64
LAYER_GAP = 60
ROW_GAP = 24
MARGIN = 20


class PlacedNode(TypedDict):
    id: str
    type: str
    layer: int
    x: int
    y: int
    width: int
    height: int


class PlacedEdge(TypedDict):
    source: str
    target: str
    branch: str | None


class Layout(TypedDict):
    nodes: list[PlacedNode]
    edges: list[PlacedEdge]
    width: int
    height: int


def graph_layers(node_ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each node's layer: the length of the longest path reaching it from a root."""
    parents: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    for source, target in edges:
        if source in parents and target in parents:
            parents[target].append(source)
    layers: dict[str, int] = {}
    # Graphs are validated acyclic, but the page must not hang on a bad row: a node still on
    # the stack when revisited is treated as a root.
    visiting: set[str] = set()

    def layer_of(node_id: str) -> int:
        if node_id in layers:
            return layers[node_id]
        if node_id in visiting:
            return 0
        visiting.add(node_id)
        above = [layer_of(parent) + 1 for parent in parents[node_id]]
        visiting.discard(node_id)
        layers[node_id] = max(above, default=0)
        return layers[node_id]

    for node_id in node_ids:
        layer_of(node_id)
    return layers


def graph_layout(graph: dict[str, Any]) -> Layout:
    """Place every node of a graph: layers left to right, graph order top to bottom."""
    raw_nodes = [node for node in graph.get("nodes") or [] if isinstance(node, dict)]
    node_ids = [str(node.get("id")) for node in raw_nodes]
    raw_edges = [edge for edge in graph.get("edges") or [] if isinstance(edge, dict)]
    edge_pairs = [(str(edge.get("source")), str(edge.get("target"))) for edge in raw_edges]
    layers = graph_layers(node_ids, edge_pairs)
    rows_used: dict[int, int] = {}
    nodes: list[PlacedNode] = []
    for node, node_id in zip(raw_nodes, node_ids, strict=True):
        layer = layers[node_id]
        row = rows_used.get(layer, 0)
        rows_used[layer] = row + 1
        nodes.append(
            {
                "id": node_id,
                "type": str(node.get("type", "")),
                "layer": layer,
                "x": MARGIN + layer * (NODE_WIDTH + LAYER_GAP),
                "y": MARGIN + row * (NODE_HEIGHT + ROW_GAP),
                "width": NODE_WIDTH,
                "height": NODE_HEIGHT,
            }
        )
    known = set(node_ids)
    edges: list[PlacedEdge] = [
        {
            "source": source,
            "target": target,
            "branch": str(edge["branch"]) if edge.get("branch") is not None else None,
        }
        for edge, (source, target) in zip(raw_edges, edge_pairs, strict=True)
        if source in known and target in known
    ]
    layer_count = max(layers.values(), default=0) + 1 if nodes else 0
    row_count = max(rows_used.values(), default=0)
    return {
        "nodes": nodes,
        "edges": edges,
        "width": 2 * MARGIN + layer_count * NODE_WIDTH + max(0, layer_count - 1) * LAYER_GAP,
        "height": 2 * MARGIN + row_count * NODE_HEIGHT + max(0, row_count - 1) * ROW_GAP,
    }
