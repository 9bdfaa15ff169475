"""The contract between the engine and node types.

A node type is one class: a `type` name, a pydantic `Params` model, and `run(ctx, params)`.
Node types know nothing of how they are scheduled or stored: they get a `NodeContext` (the
execution input, their ancestors' outputs, the resolved credential, a logger) and return a
`NodeResult` or raise `NodeError`.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pydantic

LogFunction = Callable[[str, str, Mapping[str, Any] | None], None]


class NodeError(Exception):
    """A node failed; `retryable` says whether another attempt can help."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "node_error",
        retryable: bool = False,
        retry_after_seconds: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after_seconds = retry_after_seconds

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class NodeContext:
    """What one node run may see and do."""

    execution_id: str
    node_id: str
    input: Mapping[str, Any]
    nodes: Mapping[str, Any]
    attempt: int = 1
    credential: Mapping[str, Any] | None = None
    timeout_seconds: float | None = None
    log: LogFunction = field(default=lambda level, message, data: None)
    is_cancelled: Callable[[], bool] = field(default=lambda: False)
    # Set when the engine resumes a node that asked to wait (delay): the time it asked for.
    resumed_from_wait: dt.datetime | None = None
    # Ids of the parents whose edges into this node were taken, in graph order.
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeResult:
    """A node's output; `wait_until` asks the engine to park the run and call `resume` later."""

    output: Any = None
    branch: str | None = None
    wait_until: dt.datetime | None = None


class NodeParams(pydantic.BaseModel):
    """Base of every node's params: unknown keys are errors, so typos surface on save."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class Node:
    """One node type. Subclass, set `type` and `Params`, implement `run`, register."""

    type: ClassVar[str]
    Params: ClassVar[builtins.type[NodeParams]] = NodeParams
    # Types whose params carry `credential`, and the credential types each accepts.
    credential_types: ClassVar[tuple[str, ...]] = ()
    # External effects (http, email): results are committed before such a node starts.
    has_side_effects: ClassVar[bool] = False
    # At most once (email): an interrupted run is never repeated, it fails instead.
    at_most_once: ClassVar[bool] = False
    # Whether params may hold templates; trigger params are read when saving, so they may not.
    allows_templates: ClassVar[bool] = True
    # Params passed to `run` as written, never rendered (a credential id must not be computed).
    raw_params: ClassVar[frozenset[str]] = frozenset({"credential"})

    def run(self, ctx: NodeContext, params: Any) -> NodeResult:
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def resume(self, ctx: NodeContext, params: Any) -> NodeResult:
        """Finish a node that asked to wait; by default a waiting node simply ran out its wait."""
        return NodeResult(output={"resumed_at": dt.datetime.now(dt.UTC).isoformat()})
