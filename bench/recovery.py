"""Time to a terminal state after `kill -9` of the worker process running an execution.

Issue 4: under 30 s with the default settings (lease 15 s, sweep every 5 s); a timer-set
figure, so not scaled. Production mode on PostgreSQL + Redis: one `celery worker -P prefork
-c 5` and `celery beat` (the sweeper runs from beat). The workflow is `first` (emit) → `slow`
(a test node that sleeps, with side effects, so its start is committed) → `last` (emit); the
run is killed while `slow` runs. Three kills, each repeated:
- `child`: the pool child running the execution (the main process forks a new one);
- `main`: the worker's main process alone (its pool children are orphaned);
- `group`: the main process and all its children at once (the machine or container dies).
After `main` and `group` a replacement worker starts at once, as a supervisor would. Checked
every time: the execution succeeded, `first` and `last` ran exactly once, `slow` at most twice.

    python -m bench recovery                       # with the baselines, like every part
    python -m bench.recovery [--repeats 3] [--kills child,main,group]   # this part alone

Database `autoflow_bench_recovery` and Redis db 9 (BENCH_RECOVERY_DATABASE_URL,
BENCH_RECOVERY_REDIS_URL); both are emptied first.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.baselines import Baselines
from bench.common import (
    PYTHON,
    ROOT,
    Figure,
    Process,
    celery_command,
    median,
    prepare_database,
    print_table,
    start_process,
    stop_group,
    worker_args,
)

DATABASE_URL = os.environ.get(
    "BENCH_RECOVERY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_recovery"
)
REDIS_URL = os.environ.get("BENCH_RECOVERY_REDIS_URL", "redis://127.0.0.1:6379/9")
TARGET_SECONDS = 30.0
KILLS = ("child", "main", "group")
KILL_LABELS = {
    "child": "the pool child",
    "main": "the main process",
    "group": "main process + children",
}
# The worker's app: AutoFlow's, plus the test node types (`test_effect` sleeps).
WORKER_APP = "tests.executions.celery_app"
SLOW_SECONDS = 3.0
# The engine's timing settings stay at their defaults: that is what the figure is about.
ENGINE_TIMING_VARIABLES = (
    "EXECUTION_LEASE_SECONDS",
    "EXECUTION_SWEEP_SECONDS",
    "EXECUTION_REQUEUE_AFTER_SECONDS",
    "EXECUTION_MAX_RECOVERIES",
)
WAIT_SECONDS = 120.0


def bench_env() -> dict[str, str]:
    """Production mode on this part's own database and Redis db."""
    from bench.servers import production_env

    return production_env(DATABASE_URL, REDIS_URL)


def celery_process(name: str, app: str, args: list[str], env: dict[str, str]) -> Process:
    """`celery -A app ...` in a process group of its own (so a whole worker can be killed)."""
    return start_process(name, celery_command(app, args), env=env, new_session=True)


def named_worker_args(name: str, concurrency: int = 5) -> list[str]:
    return worker_args(concurrency, "-n", f"{name}@%h")


def beat_args() -> list[str]:
    # The production scheduler (django-celery-beat) with a pid file out of the checkout.
    pidfile = os.path.join(tempfile.mkdtemp(prefix="bench-beat-"), "beat.pid")
    return ["beat", "--loglevel", "WARNING", "--pidfile", pidfile]


# --- The scenario, in a process of its own (Django configured for this part's database) ----


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"{what}: not within {timeout} s")


def _graph() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
            {"id": "first", "type": "test_emit", "params": {"value": 1}},
            {"id": "slow", "type": "test_effect", "params": {"seconds": SLOW_SECONDS}},
            {"id": "last", "type": "test_emit", "params": {"value": 2}},
        ],
        "edges": [
            {"source": "t", "target": "first"},
            {"source": "first", "target": "slow"},
            {"source": "slow", "target": "last"},
        ],
    }


def _one_kill(kill: str, index: int, env: dict[str, str], user: Any) -> dict[str, Any]:
    from executions.models import TERMINAL_STATUSES, Execution, NodeRun
    from executions.services import execution_start
    from tests.executions.nodetypes import runs_of
    from workflows.models import Workflow, WorkflowVersion

    graph = _graph()
    # Test node types are not known to the API, so the workflow row is written directly.
    workflow = Workflow.objects.create(owner=user, name=f"recovery {kill} {index}", graph=graph)
    WorkflowVersion.objects.create(
        workflow=workflow, version=1, name=workflow.name, graph=graph, created_by=user
    )
    worker = celery_process(
        f"worker-{kill}{index}", WORKER_APP, named_worker_args(f"w{kill}{index}"), env
    )
    replacement: Process | None = None
    try:
        execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=user)
        _wait(
            lambda: NodeRun.objects.filter(
                execution=execution, node_id="slow", status="running"
            ).exists(),
            60,
            "the slow node to start",
        )
        time.sleep(SLOW_SECONDS / 3)  # well inside the node
        lease_owner = Execution.objects.values_list("lease_owner", flat=True).get(pk=execution.pk)
        child_pid = int(lease_owner.split(":")[1])
        if child_pid == worker.pid:
            raise RuntimeError("the execution runs in the main process; expected a pool child")
        killed_at = time.time()
        if kill == "child":
            os.kill(child_pid, signal.SIGKILL)
        elif kill == "main":
            os.kill(worker.pid, signal.SIGKILL)
        else:
            os.killpg(worker.pid, signal.SIGKILL)
        if kill != "child":
            replacement = celery_process(
                f"replacement-{kill}{index}", WORKER_APP, named_worker_args(f"r{kill}{index}"), env
            )

        def terminal() -> Execution | None:
            row = Execution.objects.get(pk=execution.pk)
            return row if row.status in TERMINAL_STATUSES else None

        finished = _wait(terminal, WAIT_SECONDS, "a terminal state after the kill", 0.1)
        seconds = finished.finished_at.timestamp() - killed_at
        runs = {node: runs_of(str(execution.pk), node) for node in ("first", "slow", "last")}
        node_statuses = dict(
            NodeRun.objects.filter(execution=execution).values_list("node_id", "status")
        )
        checks = {
            "succeeded": finished.status == "succeeded",
            "finished_nodes_ran_once": runs["first"] == 1 and runs["last"] == 1,
            "interrupted_node_at_most_twice": 1 <= runs["slow"] <= 2,
            "all_nodes_succeeded": set(node_statuses.values()) == {"succeeded"},
        }
        return {
            "kill": kill,
            "seconds": round(seconds, 2),
            "status": finished.status,
            "recovery_count": finished.recovery_count,
            "runs": runs,
            "checks": checks,
        }
    finally:
        stop_group(worker)
        if replacement is not None:
            stop_group(replacement)


def scenario(repeats: int, kills: list[str]) -> dict[str, Any]:
    """Run every kill `repeats` times; return the per-run results."""
    for name in ENGINE_TIMING_VARIABLES:
        os.environ.pop(name, None)
    env = bench_env()
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "autoflow.settings"
    prepare_database(env)
    import django
    import redis

    django.setup()
    from django.conf import settings

    from accounts.models import User

    redis.Redis.from_url(REDIS_URL).flushdb()
    user, _ = User.objects.get_or_create(email="recovery@example.com", defaults={"name": "Bench"})
    beat = celery_process("beat", WORKER_APP, beat_args(), env)
    results = []
    try:
        for index in range(repeats):
            for kill in kills:
                result = _one_kill(kill, index, env, user)
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
    finally:
        stop_group(beat)
    return {
        "settings": {
            "EXECUTION_LEASE_SECONDS": settings.EXECUTION_LEASE_SECONDS,
            "EXECUTION_SWEEP_SECONDS": settings.EXECUTION_SWEEP_SECONDS,
            "WORKER_CONCURRENCY": 5,
            "slow_node_seconds": SLOW_SECONDS,
        },
        "runs": results,
    }


# --- The part: runs the scenario in a child process and judges it -------------------------


def measure(repeats: int = 3, kills: tuple[str, ...] = KILLS) -> dict[str, Any]:
    args = ["--scenario", "--repeats", str(repeats), "--kills", ",".join(kills)]
    completed = subprocess.run(
        [PYTHON, "-m", "bench.recovery", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,  # progress goes to stderr, live
        text=True,
        timeout=repeats * len(kills) * (WAIT_SECONDS + 90) + 300,
        check=False,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("RECOVERYJSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(f"recovery scenario failed ({completed.returncode}); see above")
    result: dict[str, Any] = json.loads(line[len("RECOVERYJSON ") :])
    return result


def figures_from(result: dict[str, Any], kills: tuple[str, ...] = KILLS) -> list[Figure]:
    figures = []
    for kill in kills:
        runs = [r for r in result["runs"] if r["kill"] == kill]
        if not runs:
            continue
        seconds = [float(r["seconds"]) for r in runs]
        failed = sorted({name for r in runs for name, ok in r["checks"].items() if not ok})
        slow_runs = [r["runs"]["slow"] for r in runs]
        figure = Figure(
            name=f"recovery after kill -9 of {KILL_LABELS[kill]}",
            value=median(seconds),
            unit="s",
            target=TARGET_SECONDS,
            scaled_target=TARGET_SECONDS,  # timer-set: not scaled
            higher_is_better=False,
            runs=seconds,
            note=f"median of {len(seconds)}, max {max(seconds):.1f} s; slow ran {slow_runs}; "
            + ("checks ok" if not failed else f"FAILED: {', '.join(failed)}"),
        )
        figure.judge()
        figures.append(figure)
    return figures


def run(base: Baselines) -> list[Figure]:
    repeats = int(os.environ.get("BENCH_RECOVERY_REPEATS", "3"))
    result = measure(repeats)
    print(f"recovery settings: {result['settings']}")
    return figures_from(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kills", default=",".join(KILLS))
    parser.add_argument("--scenario", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the workers on the way out
    kills = tuple(k for k in args.kills.split(",") if k)
    if any(k not in KILLS for k in kills):
        parser.error(f"--kills takes {', '.join(KILLS)}")
    if args.scenario:
        print("RECOVERYJSON " + json.dumps(scenario(args.repeats, list(kills))), flush=True)
        return 0
    result = measure(args.repeats, kills)
    figures = figures_from(result, kills)
    print_table("recovery (no baselines: the target is timer-set)", figures, result["settings"])
    failed = any("FAILED" in f.note for f in figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
