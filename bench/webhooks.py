"""W1 and W2: webhook workflows answered on completion, the workload users compare us on.

- W1: webhook trigger (`respond: "on_complete"`) → transform `total = a + b` → transform
  shaping `{a, b, total}` (3 nodes); the answer is that leaf's output.
- W2: webhook trigger → 20 chained transforms (each `total + 1`) → the shaping transform (22).

wrk (a separate process, keep-alive) POSTs `{"a": 1, "b": 2}` as JSON at concurrency 1 and 16.
Printed: requests/s, p50/p95/p99, errors, CPU ms per execution over web + worker (process
trees) + PostgreSQL (every postgres process) + redis-server. Production mode (PostgreSQL +
Redis + one daphne + one `celery worker -P prefork -c 5`) is judged against the targets (issue
5, set where B1 = 960 req/s, B2 = 1,430 tasks/s): W1 ≥ 170 exec/s at c=16 (x B2/1430), p50 ≤
7 ms at c=1 (x 960/B1), W2 ≥ 100 exec/s at c=16 (x B2/1430), < 6 ms CPU per W1 execution
(x 960/B1). The embedded default (`manage.py runplatform`, SQLite) runs W1 too, printed only.

    .venv/bin/python -m bench webhooks            # with the baselines
    .venv/bin/python -m bench.webhooks --quick    # a quick look, reference baselines

PostgreSQL and Redis are shared with anything else running on the machine, so their CPU share
includes other work done meanwhile (the bench database is its own, the servers are not).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench import baselines, servers
from bench.baselines import Baselines
from bench.common import (
    Figure,
    LoadResult,
    scale_latency_b1,
    scale_rate_b2,
    wrk,
)

BODY = json.dumps({"a": 1, "b": 2})
CHAIN = 20
SETTINGS = {"seconds": 10.0, "warmup": 3.0}


def _trigger() -> dict[str, Any]:
    return {
        "id": "hook",
        "type": "trigger",
        "params": {"mode": "webhook", "methods": ["POST"], "respond": "on_complete"},
    }


def _shape(source: str) -> dict[str, Any]:
    return {
        "id": "answer",
        "type": "transform",
        "params": {
            "fields": {
                "a": "{{ input.body.a }}",
                "b": "{{ input.body.b }}",
                "total": "{{ nodes." + source + ".total }}",
            }
        },
    }


def w1_graph() -> dict[str, Any]:
    total = {
        "id": "sum",
        "type": "transform",
        "params": {"fields": {"total": "{{ input.body.a + input.body.b }}"}},
    }
    return {
        "nodes": [_trigger(), total, _shape("sum")],
        "edges": [{"source": "hook", "target": "sum"}, {"source": "sum", "target": "answer"}],
    }


def w2_graph(chain: int = CHAIN) -> dict[str, Any]:
    nodes = [
        _trigger(),
        {
            "id": "s0",
            "type": "transform",
            "params": {"fields": {"total": "{{ input.body.a + input.body.b + 1 }}"}},
        },
    ]
    edges = [{"source": "hook", "target": "s0"}]
    for index in range(1, chain):
        nodes.append(
            {
                "id": f"s{index}",
                "type": "transform",
                "params": {"fields": {"total": "{{ nodes.s" + str(index - 1) + ".total + 1 }}"}},
            }
        )
        edges.append({"source": f"s{index - 1}", "target": f"s{index}"})
    nodes.append(_shape(f"s{chain - 1}"))
    edges.append({"source": f"s{chain - 1}", "target": "answer"})
    return {"nodes": nodes, "edges": edges}


def hook_url(api: servers.Api, name: str, graph: dict[str, Any]) -> str:
    """Create the workflow and check one call answers the expected leaf output."""
    workflow_id = api.workflow(name, graph)
    url = str(api.get(f"/api/workflows/{workflow_id}/webhook")["url"])
    url = api.base_url + url[url.index("/api/hooks/") :]
    answer = api.session.post(url, data=BODY, headers={"Content-Type": "application/json"})
    if answer.status_code != 200 or answer.json().get("a") != 1:
        raise RuntimeError(f"{name}: unexpected answer {answer.status_code} {answer.text[:300]}")
    return url


def load(
    platform: servers.Platform, url: str, connections: int
) -> tuple[LoadResult, dict[str, float]]:
    """Warm up, then one measured wrk run; CPU ms per request by part over the measured run."""
    arguments: dict[str, Any] = {
        "method": "POST",
        "body": BODY,
        "headers": {"Content-Type": "application/json"},
        "warmup_seconds": 0,
    }
    wrk(url, connections=connections, seconds=SETTINGS["warmup"], **arguments)
    before = platform.cpu_seconds()
    result = wrk(url, connections=connections, seconds=SETTINGS["seconds"], **arguments)
    after = platform.cpu_seconds()
    done = max(result.requests, 1)
    cpu = {part: (after[part] - before[part]) * 1000 / done for part in before}
    cpu["total"] = sum(cpu.values())
    return result, cpu


def _describe(label: str, result: LoadResult, cpu: dict[str, float]) -> str:
    parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    return (
        f"{label}: {result.rate:.1f} req/s, p50 {result.p50_ms:.2f} ms, p95 {result.p95_ms:.2f}"
        f" ms, p99 {result.p99_ms:.2f} ms, errors {result.errors}, CPU ms/exec: {parts}"
    )


def _measure_all(
    platform: servers.Platform, workloads: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    api = servers.Api(platform.base_url)
    measured: dict[str, Any] = {}
    for name, graph in workloads.items():
        url = hook_url(api, name, graph)
        for level, data in measure_url(platform, url, f"{platform.mode} {name}").items():
            measured[f"{name}_{level}"] = data
    return measured


def measure_url(platform: servers.Platform, url: str, label: str) -> dict[str, Any]:
    """`load` at c=1 and c=16, each printed: `{"c1": {"result", "cpu"}, "c16": {...}}`."""
    measured: dict[str, Any] = {}
    for connections in (1, 16):
        result, cpu = load(platform, url, connections)
        print(_describe(f"{label} c={connections}", result, cpu), flush=True)
        measured[f"c{connections}"] = {"result": result, "cpu": cpu}
    return measured


def run(base: Baselines) -> list[Figure]:
    print(f"rate limits used: {servers.RATE_LIMITS}")
    with servers.production() as platform:
        prod = _measure_all(platform, {"W1": w1_graph(), "W2": w2_graph()})
    with servers.embedded() as platform:
        emb = _measure_all(platform, {"W1": w1_graph()})
    figures = [
        Figure(
            name="W1 executions/s, c=16",
            value=prod["W1_c16"]["result"].rate,
            unit="exec/s",
            target=170,
            scaled_target=scale_rate_b2(170, base.b2_rate),
        ),
        Figure(
            name="W1 p50, c=1",
            value=prod["W1_c1"]["result"].p50_ms,
            unit="ms",
            target=7,
            scaled_target=scale_latency_b1(7, base.b1_rate),
            higher_is_better=False,
        ),
        Figure(
            name="W2 executions/s, c=16",
            value=prod["W2_c16"]["result"].rate,
            unit="exec/s",
            target=100,
            scaled_target=scale_rate_b2(100, base.b2_rate),
        ),
        Figure(
            name="W1 CPU per execution (web+worker+pg+redis), c=16",
            value=prod["W1_c16"]["cpu"]["total"],
            unit="ms",
            target=6,
            scaled_target=scale_latency_b1(6, base.b1_rate),
            higher_is_better=False,
        ),
    ]
    for key, data in {**{f"prod {k}": v for k, v in prod.items()}, **emb}.items():
        label = key if key.startswith("prod") else f"embedded {key}"
        result = data["result"]
        note = f"p50 {result.p50_ms:.1f} p95 {result.p95_ms:.1f} p99 {result.p99_ms:.1f} ms"
        note += f", errors {result.errors}, CPU {data['cpu']['total']:.2f} ms/exec"
        figures.append(Figure(name=f"{label} req/s", value=result.rate, unit="req/s", note=note))
    for figure in figures:
        figure.judge()
    return figures


def main(argv: list[str] | None = None) -> int:
    return baselines.part_main("webhooks", run, SETTINGS, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
