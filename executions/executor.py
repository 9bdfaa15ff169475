"""Walk a workflow graph: run ready nodes in topological order, persist through a `RunStore`.

The executor knows nothing of Celery, HTTP or the ORM: a `RunStore` persists its checkpoints
and final transitions (the database store lives in `executions.services`), and node types come
from the registry by name. One `Executor.run()` call advances an execution as far as it can
without waiting: it ends when the run finishes, when every ready node is waiting (a delay, a
retry back-off), when the store says the lease was lost, or when the worker is shutting down.

Context isolation without copies: each node's output is serialised once (size cap, redaction),
then frozen into read-only views (`MappingProxyType`, tuples) shared by every descendant; a node
sees `input` and only its ancestors' outputs through a lazy view, never a per-node copy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import heapq
import json
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import structlog

from autoflow.storable import json_has_nul, scrubbed
from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.registry import get_node_class

DEFAULT_NODE_TIMEOUT_SECONDS = 300.0
DEFAULT_EXECUTION_TIMEOUT_SECONDS = 3600.0
# Side-effect-free nodes run back to back share one commit at most this often.
DEFAULT_FLUSH_INTERVAL_SECONDS = 0.05

FINISHED_NODE_STATUSES = frozenset({"succeeded", "failed", "skipped", "cancelled"})


# --- The plan: a graph with defaults filled in ------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_seconds: float = 1.0
    backoff_factor: float = 2.0
    max_backoff_seconds: float = 60.0

    def delay_for(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Back-off before attempt `attempt + 1`: exponential, capped, with ±20 % jitter."""
        base = self.backoff_seconds * self.backoff_factor ** max(attempt - 1, 0)
        capped = min(base, self.max_backoff_seconds)
        return max(0.0, min(capped * (0.8 + 0.4 * rng()), self.max_backoff_seconds))


@dataclass(frozen=True)
class PlanNode:
    id: str
    type: str
    params: Mapping[str, Any]
    retry: RetryPolicy = RetryPolicy()
    timeout_seconds: float | None = DEFAULT_NODE_TIMEOUT_SECONDS
    on_error: str = "stop"
    cache_ttl_seconds: float = 0.0


@dataclass(frozen=True)
class PlanEdge:
    source: str
    target: str
    branch: str | None = None


@dataclass(frozen=True)
class Plan:
    """A validated graph ready to run: nodes in topological order and edges both ways."""

    nodes: Mapping[str, PlanNode]
    order: tuple[str, ...]
    incoming: Mapping[str, tuple[PlanEdge, ...]]
    outgoing: Mapping[str, tuple[PlanEdge, ...]]
    leaves: tuple[str, ...]
    timeout_seconds: float | None = DEFAULT_EXECUTION_TIMEOUT_SECONDS
    # The one node that runs without an incoming edge; other roots are skipped.
    trigger_id: str | None = None

    def parents(self, node_id: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(edge.source for edge in self.incoming[node_id]))


def plan_build(graph: Mapping[str, Any]) -> Plan:
    """Turn a saved graph into a `Plan` (defaults filled by `workflows.graph.parse_graph`)."""
    from workflows.graph import parse_graph

    parsed = parse_graph(graph)
    nodes = {
        node_id: PlanNode(
            id=node_id,
            type=node.type,
            params=node.params,
            retry=RetryPolicy(
                max_attempts=max(1, node.retry.max_attempts),
                backoff_seconds=node.retry.backoff_seconds,
                backoff_factor=node.retry.backoff_factor,
                max_backoff_seconds=node.retry.max_backoff_seconds,
            ),
            timeout_seconds=node.timeout_seconds,
            on_error=node.on_error,
            cache_ttl_seconds=node.cache_ttl_seconds,
        )
        for node_id, node in parsed.nodes.items()
    }

    def edges(table: Mapping[str, tuple[Any, ...]]) -> dict[str, tuple[PlanEdge, ...]]:
        return {
            key: tuple(PlanEdge(e.source, e.target, e.branch) for e in value)
            for key, value in table.items()
        }

    return Plan(
        nodes=nodes,
        order=parsed.order,
        incoming=edges(parsed.incoming),
        outgoing=edges(parsed.outgoing),
        leaves=tuple(node_id for node_id in parsed.order if node_id in set(parsed.leaves)),
        timeout_seconds=parsed.settings.timeout_seconds,
        trigger_id=parsed.trigger_id,
    )


# --- Run state the store persists --------------------------------------------------------------


@dataclass
class NodeState:
    """One node run as the executor sees it; `dirty` marks what the next checkpoint writes."""

    node_id: str
    type: str
    status: str = "pending"
    attempts: int = 0
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    cached: bool = False
    branch: str = ""
    next_attempt_at: dt.datetime | None = None
    wait_kind: str = ""
    dirty: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class LogLine:
    ts: dt.datetime
    level: str
    node_id: str | None
    message: str
    data: Any = None


@dataclass(frozen=True)
class Outcome:
    """How one `run()` ended: a terminal status, `waiting` until `wake_at`, or `released`."""

    status: str
    wake_at: dt.datetime | None = None
    output: Any = None
    error: dict[str, Any] | None = None


class LeaseLost(Exception):
    """Another worker owns this execution now (or it reached a terminal state): stop quietly."""


class RunStore(Protocol):
    """Where the executor's state goes; every write is conditional on still holding the run."""

    def checkpoint(self, *, nodes: list[NodeState], logs: list[LogLine]) -> bool:
        """Persist changed node runs and new log lines; return whether a cancel was asked."""

    def finish(
        self,
        *,
        status: str,
        output: Any,
        error: dict[str, Any] | None,
        nodes: list[NodeState],
        logs: list[LogLine],
    ) -> None:
        """Persist the final transition with the last changes."""

    def wait(self, *, wake_at: dt.datetime, nodes: list[NodeState], logs: list[LogLine]) -> None:
        """Park the execution until `wake_at` and release the worker."""

    def release(self, *, nodes: list[NodeState], logs: list[LogLine]) -> None:
        """Hand the execution back to the queue (worker shutting down)."""

    def cancel_requested(self) -> bool:
        """Cheap, possibly slightly stale: has someone asked to cancel?"""

    def cache_get(self, key: str) -> tuple[bool, Any]:
        """Return `(True, output)` for a live cached result, else `(False, None)`."""

    def cache_put(self, key: str, output: Any, ttl_seconds: float) -> None:
        """Store a result for `ttl_seconds`."""

    def credential(self, credential_id: str) -> tuple[Mapping[str, Any], list[str]] | None:
        """The owner's credential data and its secret values, or None when there is none."""


# --- Read-only data --------------------------------------------------------------------------


def freeze(value: Any) -> Any:
    """Read-only view of plain JSON data: dicts become mapping proxies, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({key: freeze(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(freeze(item) for item in value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(value: Any) -> str:
    """Serialise node data (frozen views included) compactly.

    NaN and infinities raise ValueError: JSON has none, and PostgreSQL's `jsonb` refuses them.
    """
    return json.dumps(
        value, default=_json_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


class AncestorView(Mapping[str, Any]):
    """The `nodes` a node may see: the shared outputs, filtered to its ancestors."""

    __slots__ = ("_outputs", "_visible")

    def __init__(self, outputs: Mapping[str, Any], visible: frozenset[str]) -> None:
        self._outputs = outputs
        self._visible = visible

    def __getitem__(self, key: str) -> Any:
        if key not in self._visible:
            raise KeyError(key)
        return self._outputs[key]

    def __contains__(self, key: object) -> bool:
        return key in self._visible and key in self._outputs

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._outputs if key in self._visible)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def redact(value: Any, secrets: list[str]) -> Any:
    """Replace every secret inside strings of plain JSON data with `***`."""
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {redact(key, secrets): redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, secrets) for item in value]
    return value


# --- Time limits -----------------------------------------------------------------------------


class _TimeLimitExceeded(BaseException):
    """Raised inside a node by SIGALRM; a BaseException so `except Exception` cannot eat it."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after `seconds` with SIGALRM (main thread only, e.g. a prefork child).

    Threads cannot be interrupted, so elsewhere (the embedded default's thread pool) nodes rely
    on their own bounds. An outer itimer (pytest-timeout's) is re-armed afterwards.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable or seconds is None:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _TimeLimitExceeded

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            left = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


# --- The executor ----------------------------------------------------------------------------


RenderFunction = Callable[[type[Node], Mapping[str, Any], Mapping[str, Any]], NodeParams]


def _default_render(
    node_class: type[Node], params: Mapping[str, Any], scope: Mapping[str, Any]
) -> NodeParams:
    """Render templates (unless the type takes none) and validate the params strictly."""
    from nodes.params import params_for_run, render_and_validate

    if not node_class.allows_templates:
        return params_for_run(node_class, dict(params))
    return render_and_validate(node_class, params, scope)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Executor:
    """Advance one execution as far as it can go without waiting."""

    def __init__(
        self,
        *,
        plan: Plan,
        execution_id: str,
        input: Mapping[str, Any],
        nodes: Mapping[str, NodeState],
        store: RunStore,
        deadline_at: dt.datetime | None = None,
        output_max_bytes: int = 1024 * 1024,
        flush_interval_seconds: float = DEFAULT_FLUSH_INTERVAL_SECONDS,
        render: RenderFunction = _default_render,
        clock: Callable[[], dt.datetime] = _utcnow,
        should_stop: Callable[[], bool] = lambda: False,
        enforce_timeouts: bool = True,
        rng: Callable[[], float] = random.random,
        logs: list[LogLine] | None = None,
    ) -> None:
        self.plan = plan
        self.execution_id = execution_id
        self.input = freeze(dict(input))
        self.nodes = dict(nodes)
        self.store = store
        self.deadline_at = deadline_at
        self.output_max_bytes = output_max_bytes
        self.flush_interval = flush_interval_seconds
        self.render = render
        self.clock = clock
        self.should_stop = should_stop
        self.enforce_timeouts = enforce_timeouts
        self.rng = rng
        self._frozen: dict[str, Any] = {}
        self._plain: dict[str, Any] = {}
        self._ancestors: dict[str, frozenset[str]] = {}
        self._remaining: dict[str, int] = {}
        self._ready: list[int] = []
        self._waiting: set[str] = set()
        self._position = {node_id: index for index, node_id in enumerate(plan.order)}
        # Lines the caller has not stored yet; they go out with the first write.
        self._logs: list[LogLine] = list(logs or [])
        self._secrets: list[str] = []
        self._cancel = False
        self._last_flush = time.monotonic()

    # -- public ---------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run until finished, waiting, released, or the lease is lost (`LeaseLost` propagates)."""
        outcome = self._restore()
        if outcome is not None:
            return outcome
        while True:
            outcome = self._step()
            if outcome is not None:
                return outcome

    # -- state bookkeeping ----------------------------------------------------------------

    def _restore(self) -> Outcome | None:
        """Rebuild in-memory state from stored node runs; interrupted nodes are dealt with."""
        for node_id in self.plan.order:
            self.nodes.setdefault(node_id, NodeState(node_id=node_id, type=self._type(node_id)))
            self._remaining[node_id] = len(self.plan.parents(node_id))
        to_finish: list[str] = []
        for node_id in self.plan.order:
            state = self.nodes[node_id]
            if state.status == "running":
                outcome = self._interrupted(state)
                if outcome is not None:
                    return outcome
            if state.status in ("succeeded", "failed"):
                self._publish_output(state)
            if state.status in FINISHED_NODE_STATUSES:
                to_finish.append(node_id)
        for node_id in self.plan.order:
            if self._remaining[node_id] == 0 and self.nodes[node_id].status == "pending":
                if node_id == self.plan.trigger_id or self.plan.trigger_id is None:
                    heapq.heappush(self._ready, self._position[node_id])
                else:
                    # A root other than the trigger: no edge into it is ever taken.
                    self.nodes[node_id].status = "skipped"
                    self.nodes[node_id].dirty = True
                    self._log("info", node_id, "Node skipped: no incoming edge was taken")
                    to_finish.append(node_id)
            if self.nodes[node_id].status == "waiting":
                self._waiting.add(node_id)
        for node_id in to_finish:
            self._finished(node_id)
        return None

    def _interrupted(self, state: NodeState) -> Outcome | None:
        """A node found `running`: its worker died mid-run."""
        node_class = get_node_class(state.type)
        now = self.clock()
        if node_class is not None and node_class.at_most_once:
            error = {
                "code": "delivery_unknown",
                "message": "The worker stopped while this node ran; it is not run again.",
            }
            self._log("error", state.node_id, "Node interrupted; not repeated", {"error": error})
            state.status = "failed"
            state.error = error
            state.finished_at = now
            state.dirty = True
            if self.plan.nodes[state.node_id].on_error == "stop":
                self._cancel_waiting(now)
                return self._finish("failed", None, {**error, "node_id": state.node_id})
            return None
        state.status = "pending"
        state.attempts = max(state.attempts - 1, 0)
        state.dirty = True
        self._log("warning", state.node_id, "Node interrupted by a lost worker; running it again")
        return None

    def _type(self, node_id: str) -> str:
        return self.plan.nodes[node_id].type

    def _publish_output(self, state: NodeState) -> None:
        if state.status == "succeeded":
            self._plain[state.node_id] = state.output
        else:
            self._plain[state.node_id] = {"error": state.error}
        self._frozen[state.node_id] = freeze(self._plain[state.node_id])

    def _edge_taken(self, edge: PlanEdge) -> bool:
        source = self.nodes[edge.source]
        if source.status == "succeeded":
            return edge.branch is None or edge.branch == source.branch
        return source.status == "failed" and edge.branch is None

    def _finished(self, node_id: str) -> None:
        """A node reached a final status: unlock its children, skipping the unreachable ones."""
        stack = [node_id]
        while stack:
            current = stack.pop()
            for target in dict.fromkeys(edge.target for edge in self.plan.outgoing[current]):
                self._remaining[target] -= 1
                if self._remaining[target] != 0:
                    continue
                child = self.nodes[target]
                if child.status != "pending":
                    continue
                if any(self._edge_taken(edge) for edge in self.plan.incoming[target]):
                    heapq.heappush(self._ready, self._position[target])
                else:
                    child.status = "skipped"
                    child.dirty = True
                    self._log("info", target, "Node skipped: no incoming edge was taken")
                    stack.append(target)

    def _ancestors_of(self, node_id: str) -> frozenset[str]:
        known = self._ancestors.get(node_id)
        if known is not None:
            return known
        # Iterative over the topological order, so deep chains never recurse.
        for current in self.plan.order:
            if current in self._ancestors:
                continue
            found: set[str] = set()
            for parent in self.plan.parents(current):
                found.add(parent)
                found |= self._ancestors[parent]
            self._ancestors[current] = frozenset(found)
            if current == node_id:
                break
        return self._ancestors[node_id]

    def _log(self, level: str, node_id: str | None, message: str, data: Any = None) -> None:
        self._logs.append(
            LogLine(
                ts=self.clock(),
                level=level,
                node_id=node_id,
                message=redact(message, self._secrets),
                data=redact(data, self._secrets),
            )
        )

    def _dirty(self) -> list[NodeState]:
        changed = [state for state in self.nodes.values() if state.dirty]
        for state in changed:
            state.dirty = False
        return changed

    def _take_logs(self) -> list[LogLine]:
        logs, self._logs = self._logs, []
        return logs

    def _flush(self) -> None:
        if self.store.checkpoint(nodes=self._dirty(), logs=self._take_logs()):
            self._cancel = True
        self._last_flush = time.monotonic()

    # -- the loop -------------------------------------------------------------------------

    def _step(self) -> Outcome | None:
        now = self.clock()
        if self._cancel or self.store.cancel_requested():
            return self._cancelled(now)
        if self.deadline_at is not None and now >= self.deadline_at:
            return self._timed_out(now, node_id=self._waiting_node_id())
        if self.should_stop():
            self.store.release(nodes=self._dirty(), logs=self._take_logs())
            return Outcome(status="released")
        self._wake_due(now)
        if not self._ready:
            if self._waiting:
                wake_at = min(self.nodes[n].next_attempt_at or now for n in self._waiting)
                if self.deadline_at is not None:
                    wake_at = min(wake_at, self.deadline_at)
                self.store.wait(wake_at=wake_at, nodes=self._dirty(), logs=self._take_logs())
                return Outcome(status="waiting", wake_at=wake_at)
            return self._succeeded(now)
        if time.monotonic() - self._last_flush >= self.flush_interval:
            # Checkpoint between nodes (which also reads the cancel flag) before the next starts.
            self._flush()
            if self._cancel:
                return self._cancelled(self.clock())
        state = self.nodes[self.plan.order[heapq.heappop(self._ready)]]
        node_class = get_node_class(state.type)
        if node_class is not None and (node_class.has_side_effects or node_class.at_most_once):
            # The run's state (and this node's `running` mark) is durable before any effect.
            outcome = self._start(state)
            self._flush()
            if self._cancel:
                return self._cancelled(self.clock())
        else:
            outcome = self._start(state)
        if outcome is None:
            outcome = self._run_node(state, node_class)
        return outcome

    def _wake_due(self, now: dt.datetime) -> None:
        for node_id in sorted(self._waiting, key=self._position.__getitem__):
            state = self.nodes[node_id]
            if (state.next_attempt_at or now) <= now:
                self._waiting.discard(node_id)
                heapq.heappush(self._ready, self._position[node_id])
                if state.wait_kind == "retry":
                    state.wait_kind = ""
                state.next_attempt_at = None
                state.dirty = True

    def _waiting_node_id(self) -> str | None:
        for node_id in self.plan.order:
            if self.nodes[node_id].status in ("waiting", "running"):
                return node_id
        return None

    def _start(self, state: NodeState) -> Outcome | None:
        resuming = state.wait_kind == "resume"
        if not resuming:
            state.attempts += 1
        state.status = "running"
        state.started_at = state.started_at or self.clock()
        state.dirty = True
        spec = self.plan.nodes[state.node_id]
        if resuming:
            self._log("info", state.node_id, "Node resumed after waiting")
        elif state.attempts == 1:
            self._log("info", state.node_id, "Node started", {"type": state.type})
        else:
            self._log(
                "info",
                state.node_id,
                f"Attempt {state.attempts} of {spec.retry.max_attempts}",
                {"attempt": state.attempts},
            )
        return None

    def _run_node(self, state: NodeState, node_class: type[Node] | None) -> Outcome | None:
        # Every log line the worker writes while this node runs names the node.
        with structlog.contextvars.bound_contextvars(node_id=state.node_id):
            return self._run_node_bound(state, node_class)

    def _run_node_bound(self, state: NodeState, node_class: type[Node] | None) -> Outcome | None:
        spec = self.plan.nodes[state.node_id]
        started = time.monotonic()
        resuming = state.wait_kind == "resume"
        cache_key: str | None = None
        timeout = spec.timeout_seconds
        by_deadline = False
        if self.deadline_at is not None:
            left = (self.deadline_at - self.clock()).total_seconds()
            if timeout is None or left < timeout:
                timeout, by_deadline = max(left, 0.001), True
        try:
            if node_class is None:
                raise NodeError(f"Unknown node type {state.type!r}.")
            scope = MappingProxyType(
                {
                    "input": self.input,
                    "nodes": AncestorView(self._frozen, self._ancestors_of(state.node_id)),
                }
            )
            credential = self._credential(spec, node_class)
            params = self.render(node_class, spec.params, scope)
            if spec.cache_ttl_seconds > 0 and not resuming:
                cache_key = self._cache_key(spec, params.model_dump(mode="json"))
                hit, cached_output = self.store.cache_get(cache_key)
                if hit:
                    self._log("info", state.node_id, "Cache hit: reusing a stored result")
                    return self._succeed(state, cached_output, None, started, cached=True)
            context = NodeContext(
                execution_id=self.execution_id,
                node_id=state.node_id,
                input=self.input,
                nodes=scope["nodes"],
                attempt=state.attempts,
                credential=MappingProxyType(dict(credential)) if credential else None,
                timeout_seconds=timeout,
                log=self._node_logger(state.node_id),
                is_cancelled=self.store.cancel_requested,
                resumed_from_wait=state.started_at if resuming else None,
                parents=self._taken_parents(state.node_id),
            )
            node = node_class()
            with time_limit(timeout if self.enforce_timeouts else None):
                result = node.resume(context, params) if resuming else node.run(context, params)
            if not isinstance(result, NodeResult):
                result = NodeResult(output=result)
        except _TimeLimitExceeded:
            if by_deadline:
                return self._timed_out(self.clock(), node_id=state.node_id)
            return self._attempt_failed(
                state,
                NodeError(
                    f"The node did not finish within {spec.timeout_seconds:g} s.",
                    code="node_timeout",
                    retryable=True,
                ),
            )
        except NodeError as error:
            return self._attempt_failed(state, error)
        except Exception as error:  # a node's bug fails that node, never the worker
            return self._attempt_failed(
                state, NodeError(f"{type(error).__name__}: {error}", retryable=True)
            )
        if result.wait_until is not None:
            state.status = "waiting"
            state.wait_kind = "resume"
            state.next_attempt_at = result.wait_until
            state.dirty = True
            self._waiting.add(state.node_id)
            self._log(
                "info",
                state.node_id,
                f"Waiting until {result.wait_until.isoformat()}",
                {"wake_at": result.wait_until.isoformat()},
            )
            return None
        return self._succeed(state, result.output, result.branch, started, cache_key=cache_key)

    def _taken_parents(self, node_id: str) -> tuple[str, ...]:
        taken = [e.source for e in self.plan.incoming[node_id] if self._edge_taken(e)]
        return tuple(dict.fromkeys(taken))

    def _node_logger(self, node_id: str) -> Callable[[str, str, Mapping[str, Any] | None], None]:
        def log(level: str, message: str, data: Mapping[str, Any] | None = None) -> None:
            plain = json.loads(to_json(data)) if data is not None else None
            level = level if level in ("debug", "info", "warning", "error") else "info"
            self._log(level, node_id, str(message)[:10_000], plain)

        return log

    def _credential(self, spec: PlanNode, node_class: type[Node]) -> Mapping[str, Any] | None:
        if "credential" not in spec.params or not node_class.credential_types:
            return None
        credential_id = spec.params.get("credential")
        if not credential_id:
            raise NodeError("This node needs a credential; choose one in its params.")
        found = self.store.credential(str(credential_id))
        if found is None:
            raise NodeError("The credential this node uses no longer exists.")
        data, secrets = found
        self._secrets.extend(secret for secret in secrets if secret not in self._secrets)
        return data

    def _cache_key(self, spec: PlanNode, rendered: Any) -> str:
        inputs = {parent: self._plain.get(parent) for parent in self.plan.parents(spec.id)}
        material = json.dumps([spec.type, rendered, inputs], default=_json_default, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()

    def _succeed(
        self,
        state: NodeState,
        output: Any,
        branch: str | None,
        started: float,
        *,
        cached: bool = False,
        cache_key: str | None = None,
    ) -> Outcome | None:
        try:
            encoded = to_json(output)
            size = len(encoded.encode())
        except UnicodeEncodeError:
            return self._attempt_failed(
                state,
                NodeError(
                    "The output holds a lone surrogate (half of a UTF-16 pair), which is not "
                    "text and cannot be stored."
                ),
            )
        except (TypeError, ValueError) as error:
            return self._attempt_failed(state, NodeError(f"The output is not JSON: {error}"))
        if size > self.output_max_bytes:
            return self._attempt_failed(
                state,
                NodeError(
                    f"The output is larger than {self.output_max_bytes} bytes.",
                    code="output_too_large",
                ),
            )
        if json_has_nul(encoded):
            return self._attempt_failed(
                state,
                NodeError("The output holds a NUL character (\\u0000), which cannot be stored."),
            )
        plain = redact(json.loads(encoded), self._secrets)
        now = self.clock()
        state.status = "succeeded"
        state.output = plain
        state.error = None
        state.cached = cached
        state.branch = branch or ""
        state.finished_at = now
        state.next_attempt_at = None
        state.wait_kind = ""
        state.dirty = True
        duration_ms = int((time.monotonic() - started) * 1000)
        self._log(
            "info",
            state.node_id,
            f"Node succeeded in {duration_ms} ms",
            {"duration_ms": duration_ms, "cached": cached},
        )
        if cache_key is not None:
            self.store.cache_put(cache_key, plain, self.plan.nodes[state.node_id].cache_ttl_seconds)
        self._publish_output(state)
        self._finished(state.node_id)
        return None

    def _attempt_failed(self, state: NodeState, error: NodeError) -> Outcome | None:
        spec = self.plan.nodes[state.node_id]
        # An error's text may quote what a server sent, NULs included (`autoflow.storable`).
        error_body = scrubbed(redact(error.as_dict(), self._secrets))
        now = self.clock()
        if error.retryable and state.attempts < spec.retry.max_attempts:
            delay = (
                error.retry_after_seconds
                if error.retry_after_seconds is not None
                else spec.retry.delay_for(state.attempts, self.rng)
            )
            state.status = "waiting"
            state.wait_kind = "retry"
            state.error = error_body
            state.next_attempt_at = now + dt.timedelta(seconds=delay)
            state.dirty = True
            self._waiting.add(state.node_id)
            self._log(
                "warning",
                state.node_id,
                f"Attempt {state.attempts} failed; retry scheduled in {delay:.2f} s",
                {"error": error_body, "attempt": state.attempts, "delay_seconds": round(delay, 3)},
            )
            return None
        self._log(
            "error", state.node_id, f"Node failed: {error_body['message']}", {"error": error_body}
        )
        return self._node_failed(state, error_body, now)

    def _node_failed(
        self, state: NodeState, error_body: dict[str, Any], now: dt.datetime
    ) -> Outcome | None:
        state.status = "failed"
        state.error = error_body
        state.finished_at = now
        state.next_attempt_at = None
        state.wait_kind = ""
        state.dirty = True
        if self.plan.nodes[state.node_id].on_error == "continue":
            self._publish_output(state)
            self._finished(state.node_id)
            return None
        self._cancel_waiting(now)
        error = {**error_body, "node_id": state.node_id}
        return self._finish("failed", None, error)

    def _cancel_waiting(self, now: dt.datetime) -> None:
        # A node of another branch waiting on a delay or back-off would otherwise stay
        # `waiting` forever in a failed execution: nothing will ever wake it.
        for other in self.nodes.values():
            if other.status == "waiting":
                other.status = "cancelled"
                other.finished_at = now
                other.next_attempt_at = None
                other.wait_kind = ""
                other.dirty = True
                self._waiting.discard(other.node_id)

    # -- endings ----------------------------------------------------------------------------

    def _finish(self, status: str, output: Any, error: dict[str, Any] | None) -> Outcome:
        self.store.finish(
            status=status, output=output, error=error, nodes=self._dirty(), logs=self._take_logs()
        )
        return Outcome(status=status, output=output, error=error)

    def _succeeded(self, now: dt.datetime) -> Outcome:
        output = {
            leaf: self._plain[leaf]
            for leaf in self.plan.leaves
            if self.nodes[leaf].status in ("succeeded", "failed")
        }
        self._log("info", None, "Execution succeeded")
        return self._finish("succeeded", output, None)

    def _close_open_nodes(
        self, status: str, now: dt.datetime, error: dict[str, Any] | None
    ) -> None:
        for state in self.nodes.values():
            if state.status in ("pending", "waiting", "running"):
                if status == "failed" and state.status == "pending":
                    continue  # never started: it stays pending
                state.status = status
                state.finished_at = now
                state.next_attempt_at = None
                state.wait_kind = ""
                if error is not None and status == "failed":
                    state.error = {"code": error["code"], "message": error["message"]}
                state.dirty = True

    def _cancelled(self, now: dt.datetime) -> Outcome:
        self._close_open_nodes("cancelled", now, None)
        self._log("warning", None, "Execution cancelled")
        error = {"code": "cancelled", "message": "The execution was cancelled.", "node_id": None}
        return self._finish("cancelled", None, error)

    def _timed_out(self, now: dt.datetime, *, node_id: str | None) -> Outcome:
        timeout = self.plan.timeout_seconds or 0
        message = f"The execution did not finish within {timeout:g} s."
        error = {"code": "execution_timeout", "message": message, "node_id": node_id}
        self._close_open_nodes("failed", now, error)
        self._log("error", node_id, message, {"error": error})
        return self._finish("failed", None, error)


def initial_node_states(plan: Plan) -> dict[str, NodeState]:
    """Fresh pending node runs for a plan, in topological order."""
    return {
        node_id: NodeState(node_id=node_id, type=plan.nodes[node_id].type) for node_id in plan.order
    }


def node_state_copy(state: NodeState, **changes: Any) -> NodeState:
    """A copy of a node state with some fields changed (retry-from-failed-node reuses outputs)."""
    return dataclasses.replace(state, **changes)
