"""1,000 concurrent executions, each with a 2-second delay, on one worker with 5 slots.

Issue 4: all finish within 15 s (timer-set: not scaled); the peak RSS of the worker (main
process + pool children) and of the web process are printed. Production mode: one daphne, one
`celery worker -P prefork -c 5` (WORKER_CONCURRENCY=5) and `celery beat` on PostgreSQL +
Redis. The workflow is trigger → delay 2 s → transform. The executions are created through
the API: `bench.post_load`, a separate process, POSTs `/api/workflows/{id}/execute` 1,000
times at concurrency 16. The figure runs from the first POST sent to the last `finished_at`;
the creation rate is printed next to it, since it bounds how soon the last delay can start.

    python -m bench delays                          # with the baselines, like every part
    python -m bench.delays [--count 1000] [--rounds 3]   # this part alone

Database `autoflow_bench_delays` and Redis db 9 (BENCH_DELAYS_DATABASE_URL,
BENCH_DELAYS_REDIS_URL); both are emptied first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import redis
import requests

from bench.baselines import Baselines
from bench.common import (
    PYTHON,
    ROOT,
    Figure,
    median,
    peak_rss_mb,
    prepare_database,
    print_table,
    start_daphne,
    stop_group,
    wait_http,
)
from bench.recovery import beat_args, celery_process, named_worker_args
from bench.servers import RATE_LIMITS, Api, production_env

DATABASE_URL = os.environ.get(
    "BENCH_DELAYS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_delays"
)
REDIS_URL = os.environ.get("BENCH_DELAYS_REDIS_URL", "redis://127.0.0.1:6379/9")
EXECUTIONS = 1000
DELAY_SECONDS = 2
TARGET_SECONDS = 15.0
POST_CONCURRENCY = 16
# How the executions are created: through the API (the wording), and through the
# database service in a separate process, since on a slow machine the API's creation rate
# alone can take most of the 15 s (both are printed; the service figure isolates the engine).
VIAS = ("api", "db")
VIA_LABELS = {
    "api": f"API (bench.post_load, a separate process, c={POST_CONCURRENCY})",
    "db": "execution_start in a separate process",
}
WORKER_CONCURRENCY = 5
FINISH_TIMEOUT_SECONDS = 180.0
# Under daphne every request runs in a thread of its own, so the default CONN_MAX_AGE=60
# leaves one idle connection per request: 1,000 executes exhausted PostgreSQL (503s, and the
# worker's tasks failed to connect). The web process uses the psycopg pool, as bench/api.py.
WEB_ENV = {"DATABASE_POOL": "true", "DATABASE_POOL_MAX_SIZE": "10"}

GRAPH = {
    "nodes": [
        {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
        {"id": "wait", "type": "delay", "params": {"seconds": DELAY_SECONDS}},
        {"id": "done", "type": "transform", "params": {"fields": {"done": True}}},
    ],
    "edges": [{"source": "t", "target": "wait"}, {"source": "wait", "target": "done"}],
}


def _wait_worker(base_url: str, timeout: float = 60.0) -> None:
    """Wait until /health counts a live worker (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, ValueError):
            checks = requests.get(f"{base_url}/health", timeout=5).json().get("checks", {})
            if checks.get("workers", {}).get("ok"):
                return
        time.sleep(0.5)
    raise RuntimeError("the worker did not report in within the time allowed")


def _post_batch(url: str, token: str, count: int) -> dict[str, Any]:
    args = ["--url", url, "--count", str(count), "--concurrency", str(POST_CONCURRENCY)]
    args += ["--body", json.dumps({"input": {}}), "--header", f"Authorization: Bearer {token}"]
    completed = subprocess.run(
        [PYTHON, "-m", "bench.post_load", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=FINISH_TIMEOUT_SECONDS,
        check=False,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("POSTJSON ")), None)
    if line is None:
        raise RuntimeError(f"post_load printed no report:\n{completed.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(line[len("POSTJSON ") :])
    return report


def create_via_service(workflow_id: str, count: int) -> dict[str, Any]:
    """In this (separate) process: queue `count` executions through `execution_start`."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "autoflow.settings"
    import django

    django.setup()
    from executions.services import execution_start
    from workflows.models import Workflow

    workflow = Workflow.objects.select_related("owner").get(pk=workflow_id)
    first_send = time.time()
    for _ in range(count):
        execution_start(workflow=workflow, trigger="manual", input={}, user=workflow.owner)
    last_answer = time.time()
    return {
        "count": count,
        "first_send": first_send,
        "last_answer": last_answer,
        "rate": count / max(last_answer - first_send, 1e-9),
        "statuses": {"202": count},
        "p50_ms": 0.0,
        "p95_ms": 0.0,
    }


def _create_batch(workflow_id: str, count: int, env: dict[str, str]) -> dict[str, Any]:
    completed = subprocess.run(
        [PYTHON, "-m", "bench.delays", "--create", workflow_id, "--count", str(count)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=FINISH_TIMEOUT_SECONDS,
        check=False,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("POSTJSON ")), None)
    if line is None:
        raise RuntimeError(f"the creating process printed no report:\n{completed.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(line[len("POSTJSON ") :])
    return report


def _progress(workflow_id: str) -> tuple[int, int, float | None]:
    """(executions, succeeded-or-terminal, last finished_at as epoch seconds)."""
    import psycopg

    with psycopg.connect(DATABASE_URL) as connection:
        row = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE status IN "
            "('succeeded', 'failed', 'cancelled')), extract(epoch FROM max(finished_at)) "
            "FROM executions_execution WHERE workflow_id = %s",
            [workflow_id],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), None if row[2] is None else float(row[2])


def _statuses(workflow_id: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(DATABASE_URL) as connection:
        rows = connection.execute(
            "SELECT status, count(*) FROM executions_execution WHERE workflow_id = %s "
            "GROUP BY status",
            [workflow_id],
        ).fetchall()
    return {str(status): int(count) for status, count in rows}


def one_round(
    base_url: str, api: Api, count: int, index: int, via: str, env: dict[str, str]
) -> dict[str, Any]:
    workflow_id = api.workflow(f"delays {via} {index}", GRAPH)
    if via == "api":
        token = str(api.session.headers["Authorization"]).split(" ", 1)[1]
        posted = _post_batch(f"{base_url}/api/workflows/{workflow_id}/execute", token, count)
    else:
        posted = _create_batch(workflow_id, count, env)
    created = int(posted["statuses"].get("202", 0))
    deadline = time.monotonic() + FINISH_TIMEOUT_SECONDS
    total, finished, last_finish = _progress(workflow_id)
    while time.monotonic() < deadline and finished < created:
        time.sleep(0.2)
        total, finished, last_finish = _progress(workflow_id)
    statuses = _statuses(workflow_id)
    seconds = last_finish - posted["first_send"] if last_finish and finished >= created else None
    return {
        "via": via,
        "requested": count,
        "answers": posted["statuses"],
        "first_error": posted.get("first_error", ""),
        "executions": total,
        "finished": finished,
        "statuses": statuses,
        "seconds_first_execute_to_last_finish": None if seconds is None else round(seconds, 2),
        "creation_seconds": round(posted["last_answer"] - posted["first_send"], 2),
        "creation_rate_per_s": round(posted["rate"], 1),
        "execute_p50_ms": round(posted["p50_ms"], 1),
        "execute_p95_ms": round(posted["p95_ms"], 1),
    }


def measure(
    count: int = EXECUTIONS, rounds: int = 3, vias: tuple[str, ...] = VIAS
) -> dict[str, Any]:
    """Start the stack, run `rounds` batches of `count` delayed executions per way of creating
    them; peak RSS at the end."""
    env = {
        **production_env(DATABASE_URL, REDIS_URL),
        "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
    }
    prepare_database(env)
    redis.Redis.from_url(REDIS_URL).flushdb()
    web, base_url = start_daphne("web", {**env, **WEB_ENV}, new_session=True)
    worker_command = named_worker_args("delays", WORKER_CONCURRENCY)
    worker = celery_process("worker", "autoflow", worker_command, env)
    beat = celery_process("beat", "autoflow", beat_args(), env)
    results = []
    try:
        wait_http(f"{base_url}/health", timeout=60, process=web)
        _wait_worker(base_url)
        api = Api(base_url)
        for index in range(rounds):
            for via in vias:
                result = one_round(base_url, api, count, index, via, env)
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
        memory = {
            "worker_tree": round(peak_rss_mb(worker.pid), 1),
            "web": round(peak_rss_mb(web.pid), 1),
            "beat": round(peak_rss_mb(beat.pid), 1),
        }
    finally:
        for process in (beat, worker, web):
            stop_group(process)
    return {
        "settings": {
            "executions": count,
            "delay_s": DELAY_SECONDS,
            "WORKER_CONCURRENCY": WORKER_CONCURRENCY,
            "post_concurrency": POST_CONCURRENCY,
            "created_via": ", ".join(VIA_LABELS[v] for v in vias),
            **WEB_ENV,
            **RATE_LIMITS,
        },
        "rounds": results,
        "peak_rss_mb": memory,
    }


def figures_from(result: dict[str, Any]) -> list[Figure]:
    count = result["settings"]["executions"]
    figures = []
    for via in VIAS:
        rounds = [r for r in result["rounds"] if r["via"] == via]
        if not rounds:
            continue
        times = [r["seconds_first_execute_to_last_finish"] for r in rounds]
        measured = [float(t) for t in times if t is not None]
        unfinished = len(times) - len(measured)
        refused = [r["answers"] for r in rounds if r["answers"].get("202", 0) != count]
        not_succeeded = [r["statuses"] for r in rounds if r["statuses"].get("succeeded") != count]
        rates = [float(r["creation_rate_per_s"]) for r in rounds]
        problems = [
            f"UNFINISHED {unfinished} round(s)" if unfinished else "",
            f"NOT ALL CREATED {refused}" if refused else "",
            f"NOT ALL SUCCEEDED {not_succeeded}" if not_succeeded else "",
        ]
        batch = f"{count:,} executions with a {DELAY_SECONDS} s delay"
        figure = Figure(
            name=f"{batch}, first execute → last finish ({via})",
            value=median(measured) if measured and not unfinished else FINISH_TIMEOUT_SECONDS,
            unit="s",
            target=TARGET_SECONDS,
            scaled_target=TARGET_SECONDS,  # timer-set: not scaled
            higher_is_better=False,
            runs=measured,
            note="; ".join(
                [
                    f"median of {len(rounds)}, max {max(measured, default=0):.1f} s",
                    f"created at {median(rates):.0f}/s via {VIA_LABELS[via]}",
                    *[p for p in problems if p],
                ]
            ),
        )
        figure.judge()
        figures.append(figure)
    memory = result["peak_rss_mb"]
    labels = {
        "worker_tree": f"worker (main + {WORKER_CONCURRENCY} children)",
        "web": "web (daphne)",
        "beat": "beat",
    }
    for key, label in labels.items():
        figures.append(
            Figure(
                name=f"peak RSS during the delays, {label}",
                value=memory[key],
                unit="MiB",
                higher_is_better=False,
                note="no target; VmHWM summed over the process tree",
            )
        )
    return figures


def run(base: Baselines) -> list[Figure]:
    result = measure(
        int(os.environ.get("BENCH_DELAYS_EXECUTIONS", str(EXECUTIONS))),
        int(os.environ.get("BENCH_DELAYS_ROUNDS", "3")),
    )
    print(f"delays settings: {result['settings']}")
    return figures_from(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delays", description=__doc__)
    parser.add_argument("--count", type=int, default=EXECUTIONS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--via", default=",".join(VIAS), help="api, db or both (api,db)")
    parser.add_argument("--create", metavar="WORKFLOW_ID", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    if args.create:
        report = create_via_service(args.create, args.count)
        print("POSTJSON " + json.dumps(report), flush=True)
        return 0
    vias = tuple(v for v in args.via.split(",") if v)
    if any(v not in VIAS for v in vias):
        parser.error(f"--via takes {', '.join(VIAS)}")
    result = measure(args.count, args.rounds, vias)
    figures = figures_from(result)
    print_table("delays (no baselines: the target is timer-set)", figures, result["settings"])
    print(f"peak RSS (MiB): {result['peak_rss_mb']}")
    failed = any(("NOT ALL" in f.note or "UNFINISHED" in f.note) for f in figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
