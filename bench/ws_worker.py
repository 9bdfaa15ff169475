"""The WebSocket benchmark's Celery app: AutoFlow's app, a log-emitting node type, and a
post-commit stamp on every published benchmark line.

`celery -A bench.ws_worker worker -P prefork -c 5` runs AutoFlow's tasks unchanged. The node
type `bench_ws_lines` writes lines through the engine's log path (`ctx.log`, stored by the
executor's checkpoint, published after commit). The engine publishes from a
`transaction.on_commit` callback, so wrapping `events.publisher.send` is the earliest point
that is certainly after the COMMIT returned: each benchmark line gets `committed_at` (the wall
clock there) in its `data`, and the client computes arrival minus commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from autoflow.celery import app
from bench.ws_client import GO_KEY, MARKER
from nodes.base import Node, NodeContext, NodeError, NodeParams, NodeResult
from nodes.registry import register


class LinesParams(NodeParams):
    lines: int = 25
    interval_ms: float = 2.0
    # The first node waits (bounded) until the client is subscribed.
    gate_seconds: float = 0.0


@register
class LinesNode(Node):
    """Log `lines` lines at a steady pace; optionally wait for the client's go first."""

    type = "bench_ws_lines"
    Params = LinesParams

    def run(self, ctx: NodeContext, params: LinesParams) -> NodeResult:
        if params.gate_seconds > 0:
            _wait_for_go(params.gate_seconds)
        interval = params.interval_ms / 1000
        for index in range(params.lines):
            ctx.log("info", "bench line", {MARKER: True, "node": ctx.node_id, "i": index})
            if interval:
                time.sleep(interval)
        return NodeResult(output={"lines": params.lines})


def _wait_for_go(timeout: float) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(GO_KEY):
            return
        time.sleep(0.01)
    raise NodeError("the benchmark client never subscribed")


def _stamp(messages: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Copy the benchmark's log messages with `committed_at` set on each line."""
    now = time.time()
    stamped = []
    for group, body in messages:
        if body.get("type") == "execution.logs":
            lines = []
            for line in body.get("lines") or []:
                data = line.get("data")
                if isinstance(data, dict) and data.get(MARKER):
                    line = {**line, "data": {**data, "committed_at": now}}
                lines.append(line)
            body = {**body, "lines": lines}
        stamped.append((group, body))
    return stamped


def _install_stamp() -> None:
    from executions import events

    send = events.publisher.send

    def send_stamped(messages: Iterable[tuple[str, dict[str, Any]]]) -> None:
        send(_stamp(messages))

    # The engine calls `publisher.send` from its on-commit callback (see the module docstring).
    events.publisher.send = send_stamped  # type: ignore[method-assign]


_install_stamp()

__all__ = ["app"]
