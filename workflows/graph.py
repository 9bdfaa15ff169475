"""Workflow graphs: validation on save and parsing for the executor (pure Python, no ORM).

A graph is `{"nodes": [...], "edges": [...], "settings": {...}}` (SPEC.md "Graph").
`validate_graph` reports every problem it finds at once, each naming the node and the field;
`parse_graph` turns a valid graph into the read-only shape the executor walks.
"""

from __future__ import annotations

import json
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.conf import settings

from autoflow.exceptions import GraphInvalid
from nodes.params import check_params_for_save
from nodes.registry import get_node_class, node_types

DEFAULT_NODE_TIMEOUT_SECONDS = 300.0
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 3600.0
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600.0
MAX_ATTEMPTS = 100
NODE_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_-]{1,100}\Z")
BRANCHES = ("true", "false")
TRIGGER_TYPE = "trigger"
CONDITION_TYPE = "condition"

_GRAPH_KEYS = frozenset({"nodes", "edges", "settings"})
# `name`, `position` and `notes` belong to the editor: kept, never interpreted.
_NODE_KEYS = frozenset(
    {"id", "type", "params", "retry", "timeout_seconds", "on_error", "cache_ttl_seconds"}
    | {"name", "position", "notes"}
)
_EDGE_KEYS = frozenset({"source", "target", "branch", "id"})
_RETRY_KEYS = frozenset(
    {"max_attempts", "backoff_seconds", "backoff_factor", "max_backoff_seconds"}
)
_SETTINGS_KEYS = frozenset({"timeout_seconds"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often a node is tried (`max_attempts` counts the first) and how long between."""

    max_attempts: int = 1
    backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 300.0

    def delay_before(self, attempt: int) -> float:
        """Return the back-off (without jitter) before `attempt` (2 for the first retry)."""
        exponent = max(attempt - 2, 0)
        try:
            delay = self.backoff_seconds * self.backoff_factor**exponent
        except OverflowError:
            return self.max_backoff_seconds
        return min(delay, self.max_backoff_seconds)


@dataclass(frozen=True)
class ParsedNode:
    """One node with every per-node default filled in."""

    id: str
    type: str
    params: Mapping[str, Any]
    retry: RetryPolicy
    timeout_seconds: float
    on_error: str
    cache_ttl_seconds: float
    index: int


@dataclass(frozen=True)
class ParsedEdge:
    source: str
    target: str
    branch: str | None = None


@dataclass(frozen=True)
class GraphSettings:
    timeout_seconds: float = DEFAULT_EXECUTION_TIMEOUT_SECONDS


@dataclass(frozen=True)
class ParsedGraph:
    """A valid graph, read-only, indexed for the executor.

    `parents`/`children` list node ids in edge order (a node appears once however many edges
    join the pair); `incoming` keeps every edge with its branch. `order` is a topological order,
    stable with respect to the graph's node order. `roots` other than the trigger have no
    incoming edge, so none of their incoming edges is ever taken: they are skipped.
    """

    nodes: Mapping[str, ParsedNode]
    edges: tuple[ParsedEdge, ...]
    parents: Mapping[str, tuple[str, ...]]
    children: Mapping[str, tuple[str, ...]]
    incoming: Mapping[str, tuple[ParsedEdge, ...]]
    outgoing: Mapping[str, tuple[ParsedEdge, ...]]
    order: tuple[str, ...]
    roots: tuple[str, ...]
    leaves: tuple[str, ...]
    trigger_id: str
    settings: GraphSettings

    def ancestors(self, node_id: str) -> frozenset[str]:
        """Return every node upstream of `node_id`."""
        seen: set[str] = set()
        stack = list(self.parents[node_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.parents[current])
        return frozenset(seen)

    def descendants(self, node_id: str) -> frozenset[str]:
        """Return every node downstream of `node_id`."""
        seen: set[str] = set()
        stack = list(self.children[node_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.children[current])
        return frozenset(seen)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str | None]] = []

    def add(self, node_id: str | None, field: str, message: str) -> None:
        self.items.append({"node_id": node_id, "field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            where = f"node {first['node_id']!r}, " if first["node_id"] is not None else ""
            summary = (
                f"The workflow graph is not valid ({where}{first['field']}: {first['message']})"
            )
            if len(self.items) > 1:
                summary += f" and {len(self.items) - 1} more problem(s)"
            raise GraphInvalid(summary + ".", details={"errors": self.items})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_number(
    errors: _Errors,
    node_id: str | None,
    field: str,
    value: Any,
    *,
    minimum: float,
    exclusive: bool = False,
    maximum: float = MAX_TIMEOUT_SECONDS,
    integer: bool = False,
) -> None:
    if integer and (not isinstance(value, int) or isinstance(value, bool)):
        errors.add(node_id, field, "Must be a whole number.")
        return
    if not _is_number(value):
        errors.add(node_id, field, "Must be a number.")
        return
    if (value <= minimum) if exclusive else (value < minimum):
        errors.add(
            node_id, field, f"Must be {'greater than' if exclusive else 'at least'} {minimum:g}."
        )
    elif value > maximum:
        errors.add(node_id, field, f"Must be at most {maximum:g}.")


def _unknown_keys(
    errors: _Errors,
    node_id: str | None,
    prefix: str,
    value: Mapping[str, Any],
    allowed: frozenset[str],
) -> None:
    for key in value:
        if key not in allowed:
            errors.add(node_id, f"{prefix}{key}", "Unknown field.")


def _check_node_options(errors: _Errors, node_id: str, node: Mapping[str, Any]) -> None:
    retry = node.get("retry")
    if retry is not None:
        if not isinstance(retry, Mapping):
            errors.add(node_id, "retry", "Must be an object.")
        else:
            _unknown_keys(errors, node_id, "retry.", retry, _RETRY_KEYS)
            limits = {
                "max_attempts": {"minimum": 1, "maximum": MAX_ATTEMPTS, "integer": True},
                "backoff_seconds": {"minimum": 0},
                "backoff_factor": {"minimum": 1, "maximum": 100},
                "max_backoff_seconds": {"minimum": 0},
            }
            for key, bounds in limits.items():
                if key in retry:
                    _check_number(errors, node_id, f"retry.{key}", retry[key], **bounds)  # type: ignore[arg-type]
    if "timeout_seconds" in node:
        _check_number(
            errors, node_id, "timeout_seconds", node["timeout_seconds"], minimum=0, exclusive=True
        )
    if "cache_ttl_seconds" in node:
        _check_number(errors, node_id, "cache_ttl_seconds", node["cache_ttl_seconds"], minimum=0)
    if "on_error" in node and node["on_error"] not in ("stop", "continue"):
        errors.add(node_id, "on_error", 'Must be "stop" or "continue".')


def _check_credential(
    errors: _Errors,
    node_id: str,
    node_class: Any,
    params: Mapping[str, Any],
    credentials: Mapping[str, str],
) -> None:
    if not node_class.credential_types or "credential" not in params:
        return
    credential = params["credential"]
    if credential is None:
        return
    if not isinstance(credential, str):
        errors.add(node_id, "params.credential", "Must be a credential id or null.")
        return
    credential_type = credentials.get(credential)
    if credential_type is None:
        # Worded the same whether the id is unknown or someone else's: nothing leaks.
        errors.add(node_id, "params.credential", f"No credential with id {credential!r} exists.")
    elif credential_type not in node_class.credential_types:
        wanted = ", ".join(node_class.credential_types)
        errors.add(
            node_id,
            "params.credential",
            f"Credential {credential!r} is of type {credential_type!r}; this node needs: {wanted}.",
        )


def _check_structure(
    graph: Any, errors: _Errors
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Check shapes, ids, types, edges, triggers, branches and cycles; return valid nodes/edges."""
    if not isinstance(graph, Mapping):
        errors.add(None, "graph", "Must be an object with `nodes` and `edges`.")
        return [], []
    _unknown_keys(errors, None, "", graph, _GRAPH_KEYS)
    raw_nodes = graph.get("nodes")
    raw_edges = graph.get("edges", [])
    if not isinstance(raw_nodes, list):
        errors.add(None, "nodes", "Must be a list of nodes.")
        raw_nodes = []
    if not isinstance(raw_edges, list):
        errors.add(None, "edges", "Must be a list of edges.")
        raw_edges = []
    raw_settings = graph.get("settings")
    if raw_settings is not None:
        if not isinstance(raw_settings, Mapping):
            errors.add(None, "settings", "Must be an object.")
        else:
            _unknown_keys(errors, None, "settings.", raw_settings, _SETTINGS_KEYS)
            if "timeout_seconds" in raw_settings:
                _check_number(
                    errors,
                    None,
                    "settings.timeout_seconds",
                    raw_settings["timeout_seconds"],
                    minimum=0,
                    exclusive=True,
                )

    nodes: list[Mapping[str, Any]] = []
    types: dict[str, str] = {}
    known = set(node_types())
    for index, node in enumerate(raw_nodes):
        if not isinstance(node, Mapping):
            errors.add(None, f"nodes[{index}]", "Must be an object.")
            continue
        node_id = node.get("id")
        if not isinstance(node_id, str) or not NODE_ID_PATTERN.match(node_id):
            errors.add(
                None,
                f"nodes[{index}].id",
                "Must be a string of 1-100 letters, digits, '_' or '-'.",
            )
            continue
        if node_id in types:
            errors.add(node_id, "id", f"Duplicate node id {node_id!r}.")
            continue
        _unknown_keys(errors, node_id, "", node, _NODE_KEYS)
        node_type = node.get("type")
        if not isinstance(node_type, str) or node_type not in known:
            errors.add(
                node_id,
                "type",
                f"Unknown node type {node_type!r}; known: {', '.join(sorted(known))}.",
            )
            types[node_id] = ""
        else:
            types[node_id] = node_type
        nodes.append(node)

    triggers = [node_id for node_id, node_type in types.items() if node_type == TRIGGER_TYPE]
    if not triggers:
        errors.add(None, "nodes", "A workflow needs exactly one trigger node; it has none.")
    for extra in triggers[1:]:
        errors.add(
            extra, "type", f"A workflow has exactly one trigger; {triggers[0]!r} is already one."
        )

    edges: list[Mapping[str, Any]] = []
    seen_edges: set[tuple[str, str, Any]] = set()
    for index, edge in enumerate(raw_edges):
        field = f"edges[{index}]"
        if not isinstance(edge, Mapping):
            errors.add(None, field, "Must be an object with `source` and `target`.")
            continue
        source, target, branch = edge.get("source"), edge.get("target"), edge.get("branch")
        source_id = source if isinstance(source, str) and source in types else None
        _unknown_keys(errors, source_id, f"{field}.", edge, _EDGE_KEYS)
        if not isinstance(source, str) or source not in types:
            errors.add(source_id, f"{field}.source", f"No node with id {source!r}.")
            continue
        if not isinstance(target, str) or target not in types:
            errors.add(source_id, f"{field}.target", f"No node with id {target!r}.")
            continue
        if source == target:
            errors.add(source, f"{field}.target", "An edge cannot connect a node to itself.")
            continue
        if types[target] == TRIGGER_TYPE:
            errors.add(target, f"{field}.target", "The trigger cannot have incoming edges.")
            continue
        if types[source] == CONDITION_TYPE:
            if branch not in BRANCHES:
                errors.add(
                    source,
                    f"{field}.branch",
                    'An edge leaving a condition needs "branch": "true" or "false".',
                )
                continue
        elif branch is not None:
            errors.add(
                source, f"{field}.branch", "Only edges leaving a condition node carry a branch."
            )
            continue
        key = (source, target, branch)
        if key in seen_edges:
            errors.add(source, f"{field}", f"Duplicate edge {source!r} → {target!r}.")
            continue
        seen_edges.add(key)
        edges.append(edge)

    cycle = _find_cycle([str(node["id"]) for node in nodes], edges)
    if cycle:
        path = " → ".join([*cycle, cycle[0]])
        errors.add(cycle[0], "edges", f"The graph has a cycle: {path}.")
    return nodes, edges


def _adjacency(
    node_ids: list[str], edges: list[Mapping[str, Any]]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    parents: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    children: dict[str, list[str]] = {node_id: [] for node_id in node_ids}
    joined: set[tuple[str, str]] = set()
    for edge in edges:
        source, target = edge["source"], edge["target"]
        # A condition may reach one node by both branches: one parent link, two edges.
        if (source, target) not in joined:
            joined.add((source, target))
            children[source].append(target)
            parents[target].append(source)
    return parents, children


def _topological(
    node_ids: list[str], parents: Mapping[str, list[str]], children: Mapping[str, list[str]]
) -> list[str]:
    remaining = {node_id: len(parents[node_id]) for node_id in node_ids}
    ready = deque(node_id for node_id in node_ids if remaining[node_id] == 0)
    order: list[str] = []
    while ready:
        current = ready.popleft()
        order.append(current)
        for child in children[current]:
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
    return order


def _find_cycle(node_ids: list[str], edges: list[Mapping[str, Any]]) -> list[str]:
    parents, children = _adjacency(node_ids, edges)
    order = _topological(node_ids, parents, children)
    if len(order) == len(node_ids):
        return []
    done = set(order)
    # Every node left over has a parent left over; walking parents must revisit a node.
    current = next(node_id for node_id in node_ids if node_id not in done)
    walked: dict[str, int] = {}
    path: list[str] = []
    while current not in walked:
        walked[current] = len(path)
        path.append(current)
        current = next(parent for parent in parents[current] if parent not in done)
    cycle = path[walked[current] :]
    cycle.reverse()
    return cycle


def validate_graph(
    graph: Any,
    *,
    credentials: Mapping[str, str],
    max_nodes: int | None = None,
    max_bytes: int | None = None,
) -> None:
    """Raise `GraphInvalid` listing every problem in `graph`; `credentials` maps id → type."""
    errors = _Errors()
    limit_nodes = settings.GRAPH_MAX_NODES if max_nodes is None else max_nodes
    limit_bytes = settings.GRAPH_MAX_BYTES if max_bytes is None else max_bytes
    try:
        size = len(json.dumps(graph, separators=(",", ":"), allow_nan=False).encode())
    except (TypeError, ValueError, RecursionError):
        errors.add(None, "graph", "Must be plain JSON.")
        errors.raise_if_any()
    if size > limit_bytes:
        errors.add(None, "graph", f"The graph is {size} bytes as JSON; the limit is {limit_bytes}.")
        errors.raise_if_any()
    raw_nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
    if isinstance(raw_nodes, list) and len(raw_nodes) > limit_nodes:
        errors.add(
            None,
            "nodes",
            f"The graph has {len(graph['nodes'])} nodes; the limit is {limit_nodes}.",
        )
        errors.raise_if_any()

    nodes, _edges = _check_structure(graph, errors)
    for node in nodes:
        node_id = str(node["id"])
        _check_node_options(errors, node_id, node)
        node_class = get_node_class(str(node.get("type")))
        if node_class is None:
            continue
        params = node.get("params", {})
        if not isinstance(params, Mapping):
            errors.add(node_id, "params", "Must be an object.")
            continue
        for field, message in check_params_for_save(node_class, params):
            errors.add(node_id, f"params.{field}" if field else "params", message)
        _check_credential(errors, node_id, node_class, params, credentials)
    errors.raise_if_any()


def _float(value: Any, default: float) -> float:
    return float(value) if _is_number(value) else default


def parse_graph(graph: Any) -> ParsedGraph:
    """Index a saved graph for the executor; raise `GraphInvalid` if its structure is broken."""
    errors = _Errors()
    nodes, edges = _check_structure(graph, errors)
    errors.raise_if_any()

    parsed_nodes: dict[str, ParsedNode] = {}
    for index, node in enumerate(nodes):
        retry = node.get("retry") or {}
        defaults = RetryPolicy()
        parsed_nodes[node["id"]] = ParsedNode(
            id=node["id"],
            type=node["type"],
            params=MappingProxyType(dict(node.get("params") or {})),
            retry=RetryPolicy(
                max_attempts=int(retry.get("max_attempts", defaults.max_attempts)),
                backoff_seconds=_float(retry.get("backoff_seconds"), defaults.backoff_seconds),
                backoff_factor=_float(retry.get("backoff_factor"), defaults.backoff_factor),
                max_backoff_seconds=_float(
                    retry.get("max_backoff_seconds"), defaults.max_backoff_seconds
                ),
            ),
            timeout_seconds=_float(node.get("timeout_seconds"), DEFAULT_NODE_TIMEOUT_SECONDS),
            on_error=node.get("on_error") or "stop",
            cache_ttl_seconds=_float(node.get("cache_ttl_seconds"), 0.0),
            index=index,
        )
    node_ids = list(parsed_nodes)
    parsed_edges = tuple(
        ParsedEdge(source=edge["source"], target=edge["target"], branch=edge.get("branch"))
        for edge in edges
    )
    parents, children = _adjacency(node_ids, edges)
    incoming: dict[str, list[ParsedEdge]] = {node_id: [] for node_id in node_ids}
    outgoing: dict[str, list[ParsedEdge]] = {node_id: [] for node_id in node_ids}
    for edge in parsed_edges:
        incoming[edge.target].append(edge)
        outgoing[edge.source].append(edge)
    order = _topological(node_ids, parents, children)
    raw_settings = graph.get("settings") or {}
    trigger_id = next(
        node_id for node_id, node in parsed_nodes.items() if node.type == TRIGGER_TYPE
    )
    return ParsedGraph(
        nodes=MappingProxyType(parsed_nodes),
        edges=parsed_edges,
        parents=MappingProxyType({key: tuple(value) for key, value in parents.items()}),
        children=MappingProxyType({key: tuple(value) for key, value in children.items()}),
        incoming=MappingProxyType({key: tuple(value) for key, value in incoming.items()}),
        outgoing=MappingProxyType({key: tuple(value) for key, value in outgoing.items()}),
        order=tuple(order),
        roots=tuple(node_id for node_id in node_ids if not parents[node_id]),
        leaves=tuple(node_id for node_id in node_ids if not children[node_id]),
        trigger_id=trigger_id,
        settings=GraphSettings(
            timeout_seconds=_float(
                raw_settings.get("timeout_seconds"), DEFAULT_EXECUTION_TIMEOUT_SECONDS
            )
        ),
    )
