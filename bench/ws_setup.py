"""The WebSocket benchmark's Django side, run as a subprocess in the benchmark's environment.

    python -m bench.ws_setup latency OUT.json --nodes 400 --lines-per-node 25 --interval-ms 2
    python -m bench.ws_setup sockets OUT.json --count 1000
    python -m bench.ws_setup publish IDS.json

`latency` queues one execution of a chain of `bench_ws_lines` nodes (its first node waits for
the client's go); `sockets` stores `count` running executions; `publish` stores one log line
per execution and publishes it through the engine's publisher. Each writes JSON to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")


def _user() -> Any:
    from accounts.models import User

    user, _ = User.objects.get_or_create(
        email="ws-bench@example.com", defaults={"name": "WS Bench"}
    )
    return user


def _token(user: Any) -> str:
    from accounts.tokens import tokens_issue

    return tokens_issue(user=user)["access"]


def latency(nodes: int, lines_per_node: int, interval_ms: float) -> dict[str, Any]:
    """Queue the log-emitting run; return its id and a token to watch it with."""
    from bench.ws_worker import LinesNode
    from executions.services import execution_start
    from workflows.services import workflow_create

    graph_nodes: list[dict[str, Any]] = [
        {"id": "t", "type": "trigger", "params": {"mode": "manual"}}
    ]
    edges = []
    for index in range(nodes):
        params: dict[str, Any] = {"lines": lines_per_node, "interval_ms": interval_ms}
        if index == 0:
            params["gate_seconds"] = 60.0
        graph_nodes.append({"id": f"n{index}", "type": LinesNode.type, "params": params})
        edges.append({"source": "t" if index == 0 else f"n{index - 1}", "target": f"n{index}"})
    user = _user()
    workflow = workflow_create(
        owner=user, name=f"ws bench {time.time():.0f}", graph={"nodes": graph_nodes, "edges": edges}
    )
    execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=user)
    return {
        "execution_id": str(execution.pk),
        "token": _token(user),
        "lines": nodes * lines_per_node,
    }


def sockets(count: int) -> dict[str, Any]:
    """Store `count` running executions of one workflow; return their ids and a token."""
    from django.utils import timezone

    from executions.models import Execution
    from workflows.services import workflow_create

    user = _user()
    graph = {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
            {"id": "d", "type": "debug", "params": {"message": "hi"}},
        ],
        "edges": [{"source": "t", "target": "d"}],
    }
    workflow = workflow_create(owner=user, name=f"ws sockets {time.time():.0f}", graph=graph)
    version = workflow.versions.get(version=workflow.version)
    now = timezone.now()
    executions = Execution.objects.bulk_create(
        Execution(
            workflow=workflow,
            workflow_version=workflow.version,
            version=version,
            status="running",
            trigger="manual",
            created_by=user,
            started_at=now,
        )
        for _ in range(count)
    )
    return {"execution_ids": [str(e.pk) for e in executions], "token": _token(user)}


def publish(execution_ids: list[str]) -> dict[str, Any]:
    """Store line 1 of each execution, then publish it as the worker would."""
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from executions import events
    from executions.models import Execution, ExecutionLog
    from executions.services import log_line_body
    from executions.statements import LOG_LINE_READ

    now = timezone.now()
    published_at = time.time()
    with transaction.atomic():
        rows = ExecutionLog.objects.bulk_create(
            ExecutionLog(
                execution_id=execution_id,
                seq=1,
                ts=now,
                level="info",
                node_id="d",
                message="hello, socket",
                data={"bench_ws": True},
            )
            for execution_id in execution_ids
        )
        Execution.objects.filter(pk__in=execution_ids).update(next_log_seq=F("next_log_seq") + 1)
        events.publish_on_commit(
            [
                events.logs_message(
                    row.execution_id,
                    [log_line_body({name: getattr(row, name) for name in LOG_LINE_READ})],
                )
                for row in rows
            ]
        )
    started = time.monotonic()
    idle = events.publisher.wait_idle(timeout=60)
    return {
        "published": len(rows),
        "idle": idle,
        "published_at": published_at,
        "publish_seconds": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["latency", "sockets", "publish"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--nodes", type=int, default=400)
    parser.add_argument("--lines-per-node", type=int, default=25)
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args(argv)

    import django

    django.setup()
    result: dict[str, Any]
    if args.action == "latency":
        result = latency(args.nodes, args.lines_per_node, args.interval_ms)
        args.path.write_text(json.dumps(result))
    elif args.action == "sockets":
        result = sockets(args.count)
        args.path.write_text(json.dumps(result))
    else:
        ids = json.loads(args.path.read_text())["execution_ids"]
        result = publish(ids)
        args.path.with_suffix(".published.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
