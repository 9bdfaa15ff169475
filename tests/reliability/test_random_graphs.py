"""Property: every random graph the validator accepts runs to a final state.

Graphs are random DAGs over the built-in node types that need no network (debug, condition,
transform, delay), with templates that sometimes name missing data, random `on_error` and
retries. Accepted ones run through the real executor with the in-memory store (resuming after
every wait, as the task does): each ends succeeded or failed, no node is left running or
waiting, no node runs more often than its retry policy allows, and a success leaves no node
pending. AUTOFLOW_FULL_SIZE=1 runs more examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from autoflow.exceptions import GraphInvalid
from executions.models import TERMINAL_STATUSES
from tests.executions.test_executor import run
from tests.security.world import scaled
from workflows.graph import validate_graph

_templates = st.sampled_from(
    [
        "plain",
        "{{ input.x }}",
        "{{ input.x | default(1) }}",
        "{{ input.missing }}",
        "{{ nodes.n0 | default('none') }}",
        "{{ 1 / 0 }}",
        "{{ [1, 2, 3] | length }}",
        "{{ 'a' * 3 }}",
    ]
)


def _params(node_type: str, draw: Any) -> dict[str, Any]:
    if node_type == "debug":
        return {"message": draw(_templates)}
    if node_type == "condition":
        return {"expression": draw(_templates)}
    if node_type == "transform":
        return {"fields": {"a": draw(_templates), "b": draw(_templates)}}
    return {"seconds": draw(st.integers(0, 3))}


@st.composite
def random_graphs(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 8))
    types = [
        draw(st.sampled_from(["debug", "condition", "transform", "delay"])) for _ in range(count)
    ]
    nodes: list[dict[str, Any]] = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}]
    for index, node_type in enumerate(types):
        node: dict[str, Any] = {
            "id": f"n{index}",
            "type": node_type,
            "params": _params(node_type, draw),
        }
        if draw(st.booleans()):
            node["on_error"] = draw(st.sampled_from(["stop", "continue"]))
        if draw(st.booleans()):
            node["retry"] = {"max_attempts": draw(st.integers(1, 3)), "backoff_seconds": 1}
        nodes.append(node)
    ids = ["t"] + [f"n{i}" for i in range(count)]
    kinds = {"t": "trigger", **{f"n{i}": types[i] for i in range(count)}}
    edges: list[dict[str, Any]] = []
    for position in range(1, len(ids)):
        # Edges only point forward, so most graphs are acyclic; a few back edges test refusal.
        sources = draw(st.sets(st.sampled_from(ids[:position]), min_size=0, max_size=2))
        for source in sorted(sources):
            edge: dict[str, Any] = {"source": source, "target": ids[position]}
            if kinds[source] == "condition":
                edge["branch"] = draw(st.sampled_from(["true", "false"]))
            edges.append(edge)
    if count > 1 and draw(st.integers(0, 9)) == 0:
        edges.append({"source": ids[-1], "target": ids[1]})
    return {"nodes": nodes, "edges": edges, "settings": {"timeout_seconds": 3600}}


@hypothesis_settings(
    max_examples=scaled(60, 1000),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(graph=random_graphs(), value=st.one_of(st.integers(), st.text(max_size=5)))
def test_accepted_random_graphs_run_to_a_final_state(graph: dict[str, Any], value: Any) -> None:
    try:
        validate_graph(graph, credentials={})
    except GraphInvalid as error:
        refused_status: int | None = error.status_code
    else:
        refused_status = None
    if refused_status is not None:
        assert refused_status == 400
        event("refused")
        return
    event("accepted")
    # when
    store, outcome = run(graph, {"x": value}, max_rounds=60)
    note(f"graph={graph!r} input={value!r} outcome={outcome!r}")
    # then
    assert outcome.status in TERMINAL_STATUSES
    assert outcome.status in {"succeeded", "failed"}
    assert store.final is not None
    assert store.final["status"] == outcome.status
    limits = {node["id"]: node.get("retry", {}).get("max_attempts", 1) for node in graph["nodes"]}
    for node_id, state in store.nodes.items():
        assert state.status not in {"running", "waiting"}, (node_id, state)
        assert state.attempts <= limits[node_id], (node_id, state.attempts)
        if outcome.status == "succeeded":
            assert state.status != "pending", (node_id, state)
    event(f"ended {outcome.status}")
    if outcome.status == "failed":
        assert outcome.error is not None
        assert outcome.error["code"]
