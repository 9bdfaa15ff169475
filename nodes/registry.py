"""The node registry: node types by name. Adding a type is one class and one line here."""

from __future__ import annotations

from nodes.base import Node

_REGISTRY: dict[str, type[Node]] = {}


def register(node_class: type[Node]) -> type[Node]:
    """Register a node type (usable as a class decorator)."""
    _REGISTRY[node_class.type] = node_class
    return node_class


def unregister(type_name: str) -> None:
    """Remove a type (tests register throwaway types)."""
    _REGISTRY.pop(type_name, None)


def get_node_class(type_name: str) -> type[Node] | None:
    _load_builtins()
    return _REGISTRY.get(type_name)


def node_types() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    # The import lock makes a concurrent first import wait until every type is registered;
    # afterwards this is a dictionary lookup in sys.modules.
    import nodes.builtin  # noqa: F401 - registers the built-in types
