"""End to end on PostgreSQL + Redis + one Celery worker: POST execute → succeeded, 3 nodes.

Production mode (one daphne, one `celery worker -P prefork -c 5`; see `bench/servers.py`).
The load is a separate process (`bench/execute_load.py`): threads that POST
`/api/workflows/{id}/execute` and poll `GET /api/executions/{id}` until the status is terminal
(every 5 ms at c=1, 20 ms at c=16, so client latency is rounded up by up to one interval).
Then the same again with each thread watching its executions on a WebSocket instead
(`subscribe:execution` → `execution:complete`), as the product's own pages do.
Printed: client p50/p95 (POST sent → terminal status seen), the server-side p50/p95 from the
rows (`created_at` → `finished_at`), and executions/s at c=1 and c=16, next to the B2 ceiling
(a no-op Celery task, same run) and the ratio to it. The verdicts are on the polling runs.

Targets (issue 4, set where B1 = 960 req/s and B2 = 1,430 tasks/s): p50 < 25 ms at c=1
(x 960/B1) and at least 170 executions/s at c=16 (x B2/1430).

    .venv/bin/python -m bench engine_e2e
    .venv/bin/python -m bench.engine_e2e --quick    # 5 s runs, reference baselines
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

import psycopg

from bench import baselines, servers
from bench.baselines import Baselines
from bench.common import (
    PYTHON,
    Figure,
    scale_latency_b1,
    scale_rate_b2,
)

SETTINGS = {"seconds": 10.0, "warmup": 3.0}
POLL_SECONDS = {1: 0.005, 16: 0.02}


def graph() -> dict[str, Any]:
    """Manual trigger → transform (a + b) → transform shaping the answer: 3 nodes."""
    return {
        "nodes": [
            {"id": "start", "type": "trigger", "params": {"mode": "manual"}},
            {
                "id": "sum",
                "type": "transform",
                "params": {"fields": {"total": "{{ input.a + input.b }}"}},
            },
            {
                "id": "answer",
                "type": "transform",
                "params": {"fields": {"total": "{{ nodes.sum.total }}", "a": "{{ input.a }}"}},
            },
        ],
        "edges": [{"source": "start", "target": "sum"}, {"source": "sum", "target": "answer"}],
    }


def _load(
    api: servers.Api, workflow_id: str, connections: int, seconds: float, watch: str
) -> dict[str, Any]:
    token = str(api.session.headers["Authorization"]).split(" ", 1)[1]
    completed = subprocess.run(
        [
            PYTHON,
            "-m",
            "bench.execute_load",
            "--base",
            api.base_url,
            "--token",
            token,
            "--workflow",
            workflow_id,
            "--concurrency",
            str(connections),
            "--seconds",
            str(seconds),
            "--watch",
            watch,
            "--poll",
            str(POLL_SECONDS[connections]),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("EXECJSON ")), None)
    if line is None:
        raise RuntimeError(f"execute_load printed no report:\n{completed.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(line[len("EXECJSON ") :])
    report["rate"] = report["completed"] / report["elapsed_s"]
    report["server"] = _server_latencies(report.pop("ids"))
    return report


def _server_latencies(ids: list[str]) -> dict[str, float | None]:
    """p50/p95 of created_at → finished_at over the given executions, from the rows."""
    if not ids:
        return {"p50_ms": None, "p95_ms": None}
    with psycopg.connect(servers.DATABASE_URL) as connection:
        rows = connection.execute(
            "SELECT EXTRACT(EPOCH FROM (finished_at - created_at)) * 1000 "
            "FROM executions_execution WHERE id = ANY(%s::uuid[])",
            [ids],
        ).fetchall()
    values = sorted(float(row[0]) for row in rows if row[0] is not None)
    if not values:
        return {"p50_ms": None, "p95_ms": None}
    return {
        "p50_ms": statistics.median(values),
        "p95_ms": values[max(int(len(values) * 0.95) - 1, 0)],
    }


def run(base: Baselines) -> list[Figure]:
    print(f"rate limits used: {servers.RATE_LIMITS}")
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with servers.production() as platform:
        api = servers.Api(platform.base_url)
        workflow_id = api.workflow("engine e2e", graph())
        for watch in ("poll", "ws"):
            for connections in (1, 16):
                _load(api, workflow_id, connections, SETTINGS["warmup"], watch)
                before = platform.cpu_seconds()
                report = _load(api, workflow_id, connections, SETTINGS["seconds"], watch)
                after = platform.cpu_seconds()
                done = max(report["completed"], 1)
                report["cpu_ms"] = {k: (after[k] - before[k]) * 1000 / done for k in before}
                results[watch, connections] = report
                if report["errors"]:
                    print(f"errors, samples: {report['error_samples']}")
                server = report["server"]
                cpu_ms = {k: round(v, 2) for k, v in report["cpu_ms"].items()}
                print(
                    f"execute → succeeded ({watch}) c={connections}: {report['rate']:.1f} exec/s, "
                    f"client p50 {report['p50_ms']} ms p95 {report['p95_ms']} ms, server p50 "
                    f"{server['p50_ms']} ms p95 {server['p95_ms']} ms, errors "
                    f"{report['errors']}, CPU ms/exec {json.dumps(cpu_ms)}",
                    flush=True,
                )
    c1, c16 = results["poll", 1], results["poll", 16]
    ws1, ws16 = results["ws", 1], results["ws", 16]
    ceiling = base.b2_rate
    figures = [
        Figure(
            name="execute→succeeded p50, c=1 (client)",
            value=c1["p50_ms"] or 0.0,
            unit="ms",
            target=25,
            scaled_target=scale_latency_b1(25, base.b1_rate),
            higher_is_better=False,
            note=f"p95 {c1['p95_ms'] or 0:.1f} ms; server p50 {c1['server']['p50_ms'] or 0:.1f}"
            f" p95 {c1['server']['p95_ms'] or 0:.1f} ms",
        ),
        Figure(
            name="execute→succeeded executions/s, c=16",
            value=c16["rate"],
            unit="exec/s",
            target=170,
            scaled_target=scale_rate_b2(170, base.b2_rate),
            note=f"B2 ceiling {ceiling:.0f}/s, ratio to it {c16['rate'] / ceiling:.3f}; "
            f"p50 {c16['p50_ms'] or 0:.1f} p95 {c16['p95_ms'] or 0:.1f} ms, "
            f"errors {c16['errors']}",
        ),
        Figure(
            name="execute→succeeded executions/s, c=1",
            value=c1["rate"],
            unit="exec/s",
            note=f"errors {c1['errors']}",
        ),
        Figure(
            name="execute→succeeded p50, c=1, watched on /ws",
            value=ws1["p50_ms"] or 0.0,
            unit="ms",
            note=f"p95 {ws1['p95_ms'] or 0:.1f} ms, errors {ws1['errors']}",
        ),
        Figure(
            name="execute→succeeded executions/s, c=16, watched on /ws",
            value=ws16["rate"],
            unit="exec/s",
            note=f"p50 {ws16['p50_ms'] or 0:.1f} p95 {ws16['p95_ms'] or 0:.1f} ms, "
            f"errors {ws16['errors']}, web CPU {ws16['cpu_ms'].get('web', 0):.1f} ms/exec "
            f"(polling: {c16['cpu_ms'].get('web', 0):.1f})",
        ),
    ]
    for figure in figures:
        figure.judge()
    return figures


def main(argv: list[str] | None = None) -> int:
    return baselines.part_main("engine_e2e", run, SETTINGS, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
