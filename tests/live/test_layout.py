"""Dependency-layer layout of the live page's graph."""

from __future__ import annotations

from live.layout import LAYER_GAP, NODE_WIDTH, graph_layers, graph_layout


def test_layers_follow_the_longest_path_from_a_root() -> None:
    layers = graph_layers(
        ["t", "a", "b", "c", "join"],
        [("t", "a"), ("t", "b"), ("b", "c"), ("a", "join"), ("c", "join")],
    )
    assert layers == {"t": 0, "a": 1, "b": 1, "c": 2, "join": 3}


def test_a_cycle_in_a_bad_row_does_not_hang() -> None:
    layers = graph_layers(["a", "b"], [("a", "b"), ("b", "a")])
    assert set(layers) == {"a", "b"}


def test_layout_places_layers_left_to_right_and_keeps_branches() -> None:
    graph = {
        "nodes": [
            {"id": "t", "type": "trigger"},
            {"id": "check", "type": "condition"},
            {"id": "yes", "type": "debug"},
            {"id": "no", "type": "debug"},
        ],
        "edges": [
            {"source": "t", "target": "check"},
            {"source": "check", "target": "yes", "branch": "true"},
            {"source": "check", "target": "no", "branch": "false"},
            {"source": "check", "target": "ghost"},
        ],
    }
    layout = graph_layout(graph)
    placed = {node["id"]: node for node in layout["nodes"]}
    assert placed["t"]["x"] < placed["check"]["x"] < placed["yes"]["x"]
    assert placed["yes"]["x"] == placed["no"]["x"]
    assert placed["yes"]["y"] != placed["no"]["y"]
    assert placed["check"]["x"] - placed["t"]["x"] == NODE_WIDTH + LAYER_GAP
    assert [edge["branch"] for edge in layout["edges"]] == [None, "true", "false"]
    assert layout["width"] >= placed["no"]["x"] + NODE_WIDTH
    assert layout["height"] >= placed["no"]["y"] + placed["no"]["height"]


def test_empty_graph_has_an_empty_layout() -> None:
    assert graph_layout({}) == {"nodes": [], "edges": [], "width": 40, "height": 40}
