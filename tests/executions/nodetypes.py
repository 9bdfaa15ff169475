"""Test-only node types, registered on import (also by the worker the end-to-end tests start)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter

from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.registry import register

# Runs per (execution, node): in Redis when the tests have one (the worker is another process).
_local_runs: Counter[str] = Counter()
_lock = threading.Lock()


def _redis():
    url = os.environ.get("REDIS_URL", "")
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url)


def run_key(execution_id: str, node_id: str) -> str:
    return f"autoflow-test:runs:{execution_id}:{node_id}"


def count_run(execution_id: str, node_id: str) -> None:
    client = _redis()
    if client is None:
        with _lock:
            _local_runs[run_key(execution_id, node_id)] += 1
        return
    client.incr(run_key(execution_id, node_id))
    client.expire(run_key(execution_id, node_id), 3600)


def runs_of(execution_id: str, node_id: str) -> int:
    client = _redis()
    if client is None:
        return _local_runs[run_key(execution_id, node_id)]
    value = client.get(run_key(execution_id, node_id))
    return int(value or 0)


class FlakyParams(NodeParams):
    fail_times: int = 0
    retryable: bool = True
    message: str = "planned failure"


@register
class FlakyNode(Node):
    """Fail the first `fail_times` attempts, then succeed with the attempt number."""

    type = "test_flaky"
    Params = FlakyParams

    def run(self, ctx: NodeContext, params: FlakyParams) -> NodeResult:
        count_run(ctx.execution_id, ctx.node_id)
        if ctx.attempt <= params.fail_times:
            raise NodeError(f"{params.message} {ctx.attempt}", retryable=params.retryable)
        return NodeResult(output={"attempt": ctx.attempt})


class SleepParams(NodeParams):
    seconds: float = 0.0


@register
class SleepNode(Node):
    """Block the worker for `seconds` (a stand-in for CPU-bound or stuck work)."""

    type = "test_sleep"
    Params = SleepParams

    def run(self, ctx: NodeContext, params: SleepParams) -> NodeResult:
        count_run(ctx.execution_id, ctx.node_id)
        time.sleep(params.seconds)
        return NodeResult(output={"slept": params.seconds})


@register
class EffectNode(SleepNode):
    """Like `test_sleep`, but with external effects: state is committed before it starts."""

    type = "test_effect"
    has_side_effects = True


@register
class OnceNode(SleepNode):
    """At most once, like e-mail: an interrupted run fails instead of repeating."""

    type = "test_once"
    has_side_effects = True
    at_most_once = True


class RandomParams(NodeParams):
    salt: str = ""


@register
class RandomNode(Node):
    """A fresh random value on every real run (so a cache hit is visible)."""

    type = "test_random"
    Params = RandomParams

    def run(self, ctx: NodeContext, params: RandomParams) -> NodeResult:
        count_run(ctx.execution_id, ctx.node_id)
        return NodeResult(output={"value": uuid.uuid4().hex, "salt": params.salt})


class BigParams(NodeParams):
    size: int


@register
class BigNode(Node):
    type = "test_big"
    Params = BigParams

    def run(self, ctx: NodeContext, params: BigParams) -> NodeResult:
        return NodeResult(output={"blob": "x" * params.size})


@register
class MutateNode(Node):
    """Try to change what other nodes see; report what happened."""

    type = "test_mutate"

    def run(self, ctx: NodeContext, params: NodeParams) -> NodeResult:
        outcomes = {}
        for name, attempt in (
            ("input", lambda: ctx.input.__setitem__("x", "changed")),  # type: ignore[index]
            ("nodes", lambda: ctx.nodes.__setitem__("a", "changed")),  # type: ignore[index]
            ("nested", lambda: ctx.nodes["a"]["items"].append(4)),
            ("nested_dict", lambda: ctx.nodes["a"].__setitem__("value", 0)),
        ):
            try:
                attempt()
                outcomes[name] = "changed"
            except (TypeError, AttributeError, KeyError):
                outcomes[name] = "refused"
        return NodeResult(output=outcomes)


class EmitParams(NodeParams):
    value: object = None


@register
class EmitNode(Node):
    """Output its (rendered) `value` param."""

    type = "test_emit"
    Params = EmitParams

    def run(self, ctx: NodeContext, params: EmitParams) -> NodeResult:
        count_run(ctx.execution_id, ctx.node_id)
        return NodeResult(output=params.value)


class SecretParams(NodeParams):
    credential: str | None = None


@register
class SecretNode(Node):
    """Leak its credential's token into its log and output (the engine must redact both)."""

    type = "test_secret"
    Params = SecretParams
    credential_types = ("http_bearer",)

    def run(self, ctx: NodeContext, params: SecretParams) -> NodeResult:
        token = str((ctx.credential or {}).get("token"))
        ctx.log("info", f"using {token}", {"token": token})
        return NodeResult(output={"header": f"Bearer {token}"})


@register
class BackendPidNode(Node):
    """Output the PostgreSQL backend pid serving this process's database connection."""

    type = "test_backend_pid"

    def run(self, ctx: NodeContext, params: NodeParams) -> NodeResult:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        return NodeResult(output={"pid": pid})
