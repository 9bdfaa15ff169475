"""Engine overhead per no-op node: in process (no database), and with persistence on PostgreSQL.

Targets (issue 4, set where B1 = 960 req/s; latency-like, so scaled by 960/B1):
- in process, 500-node chain and 500-node fan-out: under 100 µs per node;
- with persistence on PostgreSQL (execution_start + one execution_run in process): under 1 ms
  per node.
Run: `python -m bench engine` (needs the local PostgreSQL; uses database `autoflow_bench`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from bench.baselines import Baselines
from bench.common import Figure, ensure_database, median, scale_latency_b1

NODES = 500
RUNS = 5


def _setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench")
    if os.environ["DATABASE_URL"].startswith("postgres"):
        ensure_database(os.environ["DATABASE_URL"])  # a fresh machine has no bench database
    os.environ.pop("REDIS_URL", None)  # the embedded queue: nothing consumes, nothing waits
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
    import django

    django.setup()
    _register_noop()


def _register_noop() -> None:
    from nodes.base import Node, NodeContext, NodeParams, NodeResult
    from nodes.registry import register

    class NoopNode(Node):
        type = "bench_noop"
        Params = NodeParams

        def run(self, ctx: NodeContext, params: Any) -> NodeResult:
            return NodeResult(output=None)

    register(NoopNode)


def graph(shape: str, count: int = NODES) -> dict[str, Any]:
    nodes = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}]
    edges = []
    for index in range(count - 1):
        node_id = f"n{index}"
        nodes.append({"id": node_id, "type": "bench_noop", "params": {}})
        source = "t" if shape == "fanout" or index == 0 else f"n{index - 1}"
        edges.append({"source": source, "target": node_id})
    return {"nodes": nodes, "edges": edges}


class _DiscardingStore:
    """A run store that keeps nothing: what is left is the executor's own cost."""

    def checkpoint(self, *, nodes: Any, logs: Any) -> bool:
        return False

    def finish(self, *, status: Any, output: Any, error: Any, nodes: Any, logs: Any) -> None:
        self.status = status

    def wait(self, *, wake_at: Any, nodes: Any, logs: Any) -> None:
        raise AssertionError("a no-op graph never waits")

    def release(self, *, nodes: Any, logs: Any) -> None:
        return None

    def cancel_requested(self) -> bool:
        return False

    def cache_get(self, key: str) -> tuple[bool, Any]:
        return False, None

    def cache_put(self, key: str, output: Any, ttl_seconds: float) -> None:
        return None

    def credential(self, credential_id: str) -> None:
        return None


def in_process_us_per_node(shape: str) -> float:
    from executions.executor import Executor, NodeState, plan_build

    plan = plan_build(graph(shape))
    samples = []
    for _ in range(RUNS):
        nodes = {
            node_id: NodeState(node_id=node_id, type=plan.nodes[node_id].type)
            for node_id in plan.order
        }
        store = _DiscardingStore()
        started = time.perf_counter()
        outcome = Executor(
            plan=plan,
            execution_id="bench",
            input={},
            nodes=nodes,
            store=store,
            enforce_timeouts=False,
        ).run()
        samples.append((time.perf_counter() - started) / NODES * 1e6)
        assert outcome.status == "succeeded", outcome
    return median(samples)


def persisted_ms_per_node(shape: str) -> float:
    from django.core.management import call_command

    from accounts.models import User
    from executions.models import Execution
    from executions.services import execution_run, execution_start
    from workflows.services import workflow_create

    call_command("migrate", verbosity=0)
    user, _ = User.objects.get_or_create(email="bench@example.com", defaults={"name": "Bench"})
    workflow = workflow_create(owner=user, name=f"bench {shape}", graph=graph(shape))
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=user)
        execution_run(execution_id=str(execution.pk), heartbeat=False)
        samples.append((time.perf_counter() - started) / NODES * 1000)
        status = Execution.objects.values_list("status", flat=True).get(pk=execution.pk)
        assert status == "succeeded", status
    return median(samples)


def run(base: Baselines) -> list[Figure]:
    b1_rate = base.b1_rate
    _setup_django()
    figures = []
    for shape in ("chain", "fanout"):
        value = in_process_us_per_node(shape)
        figures.append(
            Figure(
                name=f"engine overhead, in process, {NODES}-node {shape}",
                value=value,
                unit="µs/node",
                target=100,
                scaled_target=scale_latency_b1(100, b1_rate),
                higher_is_better=False,
            )
        )
    for shape in ("chain", "fanout"):
        value = persisted_ms_per_node(shape)
        figures.append(
            Figure(
                name=f"engine overhead, PostgreSQL, {NODES}-node {shape}",
                value=value,
                unit="ms/node",
                target=1,
                scaled_target=scale_latency_b1(1, b1_rate),
                higher_is_better=False,
            )
        )
    for figure in figures:
        figure.judge()
    return [dataclasses.replace(f) for f in figures]
