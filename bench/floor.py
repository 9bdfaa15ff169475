"""The floor under W1: what AutoFlow's stack costs for a webhook answered on completion, with
none of the engine's work, next to W1 itself in the same run.

The floor platform is production mode's (one daphne serving `autoflow.asgi:application`, one
`celery worker -P prefork -c 5`, PostgreSQL, Redis, AutoFlow's settings) with one view and one
task in place of the product (`bench/floor_app.py`, `bench/floor_celery.py`): the view stores
the JSON body in a row and queues the task; the task computes `{a, b, total}` in one UPDATE and
announces the end on the waiting process's completion channel, which answers the call. That is
one request through the middleware chain, one commit, one publish, one Celery task with
`acks_late`, one more commit and one completion message. W1 (`bench.webhooks`) does the same
and also resolves a webhook token, counts a rate limit, stores the run's graph version, node
runs and log lines, renders templates, claims the run with a lease and records the call.

Printed with wrk as in `bench.webhooks` (POST `{"a": 1, "b": 2}`, c=1 and c=16): requests/s,
p50/p95, CPU ms per call by part and in B1 units (B1's CPU per request, same run), each judged
against W1's targets (issue 5: p50 <= 7 ms at c=1 and < 6 ms of CPU per execution, at B1 = 960).
A floor that misses a target says the stack alone does; the difference to W1 is AutoFlow's own.

    .venv/bin/python -m bench floor
    .venv/bin/python -m bench.floor --quick    # 5 s runs, reference baselines
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import psycopg
import requests

from bench import baselines, servers, webhooks
from bench.baselines import Baselines
from bench.common import (
    Figure,
    celery_command,
    ensure_database,
    scale_latency_b1,
    start_daphne,
    start_process,
    worker_args,
)
from bench.floor_celery import TABLE

SETTINGS = webhooks.SETTINGS


@contextlib.contextmanager
def floor_platform() -> Iterator[servers.Platform]:
    """AutoFlow's web and worker processes, started on the floor's URLconf and task."""
    env = {**servers.production_env(), "DJANGO_SETTINGS_MODULE": "bench.floor_settings"}
    ensure_database(servers.DATABASE_URL)
    with psycopg.connect(servers.DATABASE_URL, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id uuid PRIMARY KEY, body jsonb NOT NULL,"
            " result jsonb, created_at timestamptz NOT NULL DEFAULT now(),"
            " finished_at timestamptz)"
        )
        connection.execute(f"TRUNCATE {TABLE}")
    web, base_url = start_daphne("floor-web", env)
    worker = start_process("floor-worker", celery_command("bench.floor_celery", worker_args()), env)
    platform = servers.Platform(base_url=base_url, mode="production", processes=[web, worker])
    try:
        _wait_answer(f"{base_url}/floor", platform)
        yield platform
    finally:
        worker.stop()
        web.stop()


def _wait_answer(url: str, platform: servers.Platform, timeout: float = 60.0) -> None:
    """Until one call comes back with the right answer (the worker is up), bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in platform.processes:
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited: {process.log_path.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException, ValueError):
            answer = requests.post(url, data=webhooks.BODY, timeout=5)
            if answer.status_code == 200 and answer.json() == {"a": 1, "b": 2, "total": 3}:
                return
        time.sleep(0.5)
    raise RuntimeError("the floor platform did not answer within the time allowed")


def run(base: Baselines) -> list[Figure]:
    print(f"rate limits used: {servers.RATE_LIMITS}")
    with floor_platform() as platform:
        floor = webhooks.measure_url(platform, f"{platform.base_url}/floor", "floor")
    with servers.production() as platform:
        api = servers.Api(platform.base_url)
        w1 = webhooks.measure_url(platform, webhooks.hook_url(api, "W1", webhooks.w1_graph()), "W1")
    unit = base.b1_cpu_ms or None
    figures: list[Figure] = []
    for name, measured in (("floor", floor), ("W1", w1)):
        cpu = measured["c16"]["cpu"]
        in_units = f", {cpu['total'] / unit:.2f} B1 units" if unit else ""
        parts = ", ".join(f"{part} {value:.2f}" for part, value in cpu.items() if part != "total")
        figures += [
            Figure(
                name=f"{name} p50, c=1",
                value=measured["c1"]["result"].p50_ms,
                unit="ms",
                target=7,
                scaled_target=scale_latency_b1(7, base.b1_rate),
                higher_is_better=False,
            ),
            Figure(
                name=f"{name} CPU per call, c=16",
                value=cpu["total"],
                unit="ms",
                target=6,
                scaled_target=scale_latency_b1(6, base.b1_rate),
                higher_is_better=False,
                note=f"{parts}{in_units}",
            ),
            Figure(
                name=f"{name} calls/s, c=16",
                value=measured["c16"]["result"].rate,
                unit="req/s",
                note=f"p95 {measured['c16']['result'].p95_ms:.1f} ms",
            ),
        ]
    for figure in figures:
        figure.judge()
    return figures


def main(argv: list[str] | None = None) -> int:
    return baselines.part_main("floor", run, SETTINGS, __doc__.split("\n\n")[0], argv)


if __name__ == "__main__":
    sys.exit(main())
