"""The two baselines every target is scaled by (SPEC.md "Benchmarks").

B1: a bare Django view returning `{}` under one daphne process (started as AutoFlow's web is,
    `bench.common.start_daphne`), wrk at concurrency 16 (req/s), p50 at concurrency 1, and the
    server's CPU ms per request.
B2: 20,000 no-op Celery tasks published by a separate process to
    `celery worker -P prefork -c 5` on the same Redis, no result backend, first publish → last
    completion (tasks/s).
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from bench.common import (
    B1_REFERENCE,
    B2_REFERENCE,
    PYTHON,
    Figure,
    Process,
    celery_command,
    print_table,
    running,
    start_daphne,
    start_process,
    wait_http,
    worker_args,
    write_results,
    wrk,
)
from bench.noop_celery import COUNTER_KEY, REDIS_URL

B2_TASKS = 20_000


@dataclass
class Baselines:
    b1_rate: float
    b1_p50_ms: float
    b1_cpu_ms: float
    b2_rate: float

    def as_dict(self) -> dict[str, float]:
        return {
            "B1_req_per_s": round(self.b1_rate, 1),
            "B1_p50_ms_c1": round(self.b1_p50_ms, 3),
            "B1_cpu_ms_per_req": round(self.b1_cpu_ms, 3),
            "B2_tasks_per_s": round(self.b2_rate, 1),
        }


def measure_b1(seconds: float = 10.0) -> tuple[float, float, float]:
    server, base_url = start_daphne("b1-daphne", app="bench.bare_app:application")
    with running(server):
        url = f"{base_url}/"
        wait_http(url, process=server)
        c16 = wrk(url, connections=16, seconds=seconds, cpu_pids=[server.pid])
        c1 = wrk(url, connections=1, seconds=max(5.0, seconds / 2))
    return c16.rate, c1.p50_ms, c16.server_cpu_ms_per_request or 0.0


def measure_b2(tasks: int = B2_TASKS, timeout: float = 120.0) -> float:
    client = redis.Redis.from_url(REDIS_URL)
    client.delete(COUNTER_KEY, "bench:b2:start")
    client.delete("celery")
    worker = start_process(
        "b2-worker",
        celery_command(
            "bench.noop_celery",
            worker_args(5, "--without-mingle", "--without-gossip", "--without-heartbeat"),
        ),
    )
    with running(worker):
        _wait_worker_ready(worker)
        publisher = subprocess.Popen([PYTHON, "-m", "bench.b2_publish", str(tasks)])
        deadline = time.monotonic() + timeout
        done_at = None
        while time.monotonic() < deadline:
            if int(client.get(COUNTER_KEY) or 0) >= tasks:
                done_at = time.time()
                break
            time.sleep(0.01)
        publisher.wait(timeout=30)
        if done_at is None:
            raise RuntimeError(f"B2: not all {tasks} tasks completed within {timeout} s")
        started = float(client.get("bench:b2:start") or done_at)
    return tasks / (done_at - started)


def _wait_worker_ready(worker: Process, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.popen.poll() is not None:
            raise RuntimeError(worker.log_path.read_text()[-3000:])
        result = subprocess.run(
            celery_command("bench.noop_celery", ["inspect", "ping", "--timeout", "1"]),
            capture_output=True,
            text=True,
            check=False,
        )
        if "pong" in result.stdout:
            return
        time.sleep(0.5)
    raise RuntimeError("B2 worker did not become ready")


def measure(seconds: float = 10.0) -> Baselines:
    b1_rate, b1_p50, b1_cpu = measure_b1(seconds)
    return Baselines(b1_rate=b1_rate, b1_p50_ms=b1_p50, b1_cpu_ms=b1_cpu, b2_rate=measure_b2())


def reference() -> Baselines:
    """The machine the targets were set on (B1 = 960, B2 = 1,430): for quick checks only."""
    return Baselines(b1_rate=B1_REFERENCE, b1_p50_ms=0.0, b1_cpu_ms=0.0, b2_rate=B2_REFERENCE)


def part_main(
    name: str,
    run: Callable[[Baselines], list[Figure]],
    settings: dict[str, float],
    description: str,
    argv: list[str] | None,
) -> int:
    """`python -m bench.<name> [--quick]`: one part on its own, judged against fresh baselines.

    `--quick` shortens the part's load runs (its `settings`) to 5 s after a 2 s warm-up and
    judges against `reference()` instead of measuring: a check that it runs, not a figure.
    """
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=description)
    parser.add_argument("--quick", action="store_true", help="5 s runs, reference baselines")
    args = parser.parse_args(argv)
    if args.quick:
        settings.update(seconds=5.0, warmup=2.0)
    base = reference() if args.quick else measure()
    figures = run(base)
    print_table(name, figures, base.as_dict())
    print(f"wrote {write_results(name, {'baselines': base.as_dict(), 'figures': figures})}")
    return 0
