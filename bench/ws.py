"""WebSocket benchmarks (issue 6), in production mode on a database and Redis db of their own.

1. Delivery latency, commit → client: daphne + channels-redis + `celery worker -P prefork -c 5`
   run an execution whose `bench_ws_lines` nodes log 10,000 lines at a steady pace through the
   engine's log path; each published line carries the wall clock right after its commit
   (`bench/ws_worker.py`), and a separate client process (`bench/ws_client.py`, subscribed
   before the first line) records arrival minus commit. p50/p95/p99 per run; target p95 under
   20 ms where B1 = 960 req/s (times 960/B1); the verdict is the median over the runs.
2. 1,000 concurrent subscribed sockets on one daphne process, opened by a separate client
   process: the web process's RSS before and after, memory per socket, and how many sockets got
   the message then published to their execution (all of them, unscaled).

    python -m bench ws                    # with the baselines, via the runner
    python -m bench.ws --lines 2000 --sockets 200 --runs 1 --reference-baselines   # quick check
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from bench import baselines, servers
from bench.baselines import Baselines
from bench.common import (
    PYTHON,
    ROOT,
    Figure,
    Process,
    celery_command,
    machine_facts,
    median,
    prepare_database,
    print_table,
    running,
    scale_latency_b1,
    start_daphne,
    start_process,
    wait_http,
    worker_args,
    write_results,
)
from bench.ws_client import READY_KEY

DATABASE_URL = os.environ.get(
    "BENCH_WS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_ws"
)
REDIS_URL = os.environ.get("BENCH_WS_REDIS_URL", "redis://127.0.0.1:6379/10")
LINES = int(os.environ.get("BENCH_WS_LINES", "10000"))
SOCKETS = int(os.environ.get("BENCH_WS_SOCKETS", "1000"))
RUNS = int(os.environ.get("BENCH_WS_RUNS", "3"))
LINES_PER_NODE = 25
# 25 lines 2 ms apart: each node takes ~50 ms, the executor's checkpoint interval, so lines
# are committed in batches of ~25 every ~50 ms (~500 lines/s, 10,000 lines in ~20 s).
INTERVAL_MS = 2.0
LATENCY_TARGET_MS = 20.0


def production_env() -> dict[str, str]:
    """Production mode on this part's own database and Redis db."""
    return servers.production_env(DATABASE_URL, REDIS_URL)


def prepare(env: dict[str, str]) -> None:
    """Create and migrate the bench database, empty its run tables, flush the Redis db."""
    prepare_database({**env, "DATABASE_URL": DATABASE_URL})
    redis.Redis.from_url(REDIS_URL).flushdb()


def rss_mb(pid: int) -> float:
    """Current resident memory (VmRSS) of one process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _helper(args: list[str], env: dict[str, str], timeout: float) -> None:
    completed = subprocess.run(
        [PYTHON, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed:\n{completed.stdout}\n{completed.stderr[-3000:]}")


def _daphne(env: dict[str, str]) -> tuple[Process, str]:
    web, base = start_daphne("ws-web", env)
    wait_http(f"{base}/health", timeout=60, process=web)
    return web, base


def latency_runs(env: dict[str, str], *, lines: int, runs: int) -> list[dict[str, Any]]:
    """One daphne + one worker; per run a fresh execution watched by a fresh client process."""
    worker_command = celery_command("bench.ws_worker", worker_args(env["WORKER_CONCURRENCY"]))
    worker = start_process("ws-worker", worker_command, env)
    web, base = _daphne(env)
    results = []
    work = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    nodes = max(1, lines // LINES_PER_NODE)
    store = redis.Redis.from_url(REDIS_URL)
    with running(worker, web):
        for index in range(runs):
            store.delete("bench:ws:go")
            setup, out = work / f"latency-{index}.json", work / f"latency-{index}-out.json"
            _helper(
                [
                    "-m",
                    "bench.ws_setup",
                    "latency",
                    str(setup),
                    f"--nodes={nodes}",
                    f"--lines-per-node={LINES_PER_NODE}",
                    f"--interval-ms={INTERVAL_MS}",
                ],
                env,
                timeout=120,
            )
            started = time.monotonic()
            ws_url = base.replace("http://", "ws://") + "/ws"
            _helper(
                ["-m", "bench.ws_client", "latency", ws_url, str(setup), str(out)],
                env,
                timeout=lines / 50 + 180,
            )
            result = json.loads(out.read_text())
            samples = result.pop("latencies_ms")
            result.update(
                expected=nodes * LINES_PER_NODE,
                measured=len(samples),
                seconds=round(time.monotonic() - started, 1),
                p50_ms=percentile(samples, 50),
                p95_ms=percentile(samples, 95),
                p99_ms=percentile(samples, 99),
                max_ms=max(samples, default=0.0),
            )
            print(f"ws latency run {index + 1}: {json.dumps(result)}", flush=True)
            results.append(result)
    return results


def sockets_run(env: dict[str, str], *, count: int) -> dict[str, Any]:
    """`count` subscribed sockets on one daphne process: RSS before/after, messages received."""
    work = Path(tempfile.mkdtemp(prefix="bench-ws-sockets-"))
    web, base = _daphne(env)
    ws_url = base.replace("http://", "ws://") + "/ws"
    store = redis.Redis.from_url(REDIS_URL)
    with running(web):
        # Warm-up: the first socket imports and caches what every later one reuses.
        warm, warm_out = work / "warm.json", work / "warm-out.json"
        _helper(["-m", "bench.ws_setup", "sockets", str(warm), "--count=20"], env, timeout=120)
        _helper(["-m", "bench.ws_setup", "publish", str(warm)], env, timeout=120)
        _helper(["-m", "bench.ws_client", "sockets", ws_url, str(warm), str(warm_out)], env, 120)
        setup, out = work / "sockets.json", work / "sockets-out.json"
        _helper(["-m", "bench.ws_setup", "sockets", str(setup), f"--count={count}"], env, 120)
        time.sleep(1.0)
        before = rss_mb(web.pid)
        # The warm-up client left its own ready count behind.
        store.delete(READY_KEY)
        client = subprocess.Popen(
            [PYTHON, "-m", "bench.ws_client", "sockets", ws_url, str(setup), str(out)],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 300
            while store.get(READY_KEY) is None and time.monotonic() < deadline:
                if client.poll() is not None:
                    raise RuntimeError("the socket client exited before it was ready")
                time.sleep(0.1)
            opened = int(store.get(READY_KEY) or 0)
            time.sleep(1.0)
            after = rss_mb(web.pid)
            _helper(["-m", "bench.ws_setup", "publish", str(setup)], env, timeout=120)
            client.wait(timeout=360)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
        result = json.loads(out.read_text())
        published = json.loads(setup.with_suffix(".published.json").read_text())
    # Same machine, same clock: from the start of the publishing transaction to the last arrival.
    last = result.get("last_received_at")
    delivered_seconds = last - published["published_at"] if last else float("nan")
    result.update(
        sockets=count,
        rss_before_mb=round(before, 1),
        rss_after_mb=round(after, 1),
        kib_per_socket=round((after - before) * 1024 / max(opened, 1), 1),
        publish_seconds=round(published["publish_seconds"], 3),
        publish_to_all_received_s=round(delivered_seconds, 3),
    )
    print(f"ws sockets: {json.dumps(result)}", flush=True)
    return result


def figures_from(
    base: Baselines, latency: list[dict[str, Any]], sockets: dict[str, Any]
) -> list[Figure]:
    scaled = scale_latency_b1(LATENCY_TARGET_MS, base.b1_rate)
    measured = sum(r["measured"] for r in latency)
    expected = sum(r["expected"] for r in latency)
    note = f"{measured}/{expected} lines timed over {len(latency)} run(s)"
    figures = [
        Figure(
            name="ws delivery commit→client p50",
            value=median([r["p50_ms"] for r in latency]),
            unit="ms",
            higher_is_better=False,
            runs=[r["p50_ms"] for r in latency],
        ),
        Figure(
            name="ws delivery commit→client p95",
            value=median([r["p95_ms"] for r in latency]),
            unit="ms",
            target=LATENCY_TARGET_MS,
            scaled_target=scaled,
            higher_is_better=False,
            runs=[r["p95_ms"] for r in latency],
            note=note,
        ),
        Figure(
            name="ws delivery commit→client p99",
            value=median([r["p99_ms"] for r in latency]),
            unit="ms",
            higher_is_better=False,
            runs=[r["p99_ms"] for r in latency],
        ),
        Figure(
            name=f"ws {sockets['sockets']} sockets: web RSS per socket",
            value=sockets["kib_per_socket"],
            unit="KiB",
            higher_is_better=False,
            note=f"RSS {sockets['rss_before_mb']} → {sockets['rss_after_mb']} MiB, "
            f"{sockets['opened']} opened in {sockets['open_seconds']:.1f} s",
        ),
        Figure(
            name=f"ws {sockets['sockets']} sockets: got their message",
            value=sockets["received"],
            unit="sockets",
            target=sockets["sockets"],
            scaled_target=sockets["sockets"],
            note=f"all received {sockets['publish_to_all_received_s']} s after publish",
        ),
    ]
    for figure in figures:
        figure.judge()
    return figures


def run(
    base: Baselines, *, lines: int = LINES, sockets: int = SOCKETS, runs: int = RUNS
) -> list[Figure]:
    env = production_env()
    print(
        f"ws bench: DATABASE_URL={DATABASE_URL} REDIS_URL={REDIS_URL} "
        + " ".join(f"{k}={v}" for k, v in servers.RATE_LIMITS.items()),
        flush=True,
    )
    prepare(env)
    latency = latency_runs(env, lines=lines, runs=runs)
    socket_result = sockets_run(env, count=sockets)
    return figures_from(base, latency, socket_result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=LINES)
    parser.add_argument("--sockets", type=int, default=SOCKETS)
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument(
        "--reference-baselines",
        action="store_true",
        help="Judge against B1 = 960, B2 = 1,430 instead of measuring them (quick checks only).",
    )
    args = parser.parse_args(argv)
    base = baselines.reference() if args.reference_baselines else baselines.measure()
    figures = run(base, lines=args.lines, sockets=args.sockets, runs=args.runs)
    print_table("ws", figures, base.as_dict())
    path = write_results(
        "ws", {"machine": machine_facts(), "baselines": base.as_dict(), "figures": figures}
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
