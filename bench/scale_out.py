"""Scale-out at full size: 2 daphne + 3 Celery workers, 500 executions, one worker SIGKILLed.

The same scenario as `tests/ops/test_scale_out.py` (CI runs it with 60), on a database of its
own, which it migrates:

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/autoflow_bench_scale \\
    BENCH_REDIS_URL=redis://127.0.0.1:6379/13 \\
    .venv/bin/python -m bench.scale_out [--executions 500] [--skip-baselines]

The Redis database is flushed first (the test node types count their runs there). The verdict
is about correctness (every execution terminal, no finished node run twice, WebSocket
subscribers on both web processes saw every line); executions/s is printed next to the B2
baseline for comparison between runs, with no target of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from bench.common import ensure_database

PYTHON = sys.executable
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_scale"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def _prepare_environment() -> None:
    # Settings read these at import, so they are set before Django is.
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ["REDIS_URL"] = REDIS_URL
    os.environ["AUTOFLOW_TESTING"] = "1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
    ensure_database(DATABASE_URL)
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=500)
    parser.add_argument("--sleep", type=float, default=0.05, help="Seconds per sleeping node.")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--skip-baselines", action="store_true", help="Do not measure B2.")
    args = parser.parse_args(argv)

    _prepare_environment()
    import django

    django.setup()
    import redis

    from bench.common import machine_facts, write_results
    from tests.executions.conftest import FAST_ENGINE_ENV, EngineProcesses
    from tests.factories import UserFactory
    from tests.ops.scale_out import WORKER_CONCURRENCY, run_scale_out
    from tests.servers import server_env

    redis.Redis.from_url(REDIS_URL).flushdb()
    owner = UserFactory.create(email="scale-out@example.com", name="Scale Out")
    engine = EngineProcesses(
        env=server_env(DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL, **FAST_ENGINE_ENV),
        started=[],
    )
    try:
        result = run_scale_out(
            owner=owner,
            engine=engine,
            executions=args.executions,
            sleep_seconds=args.sleep,
            timeout=args.timeout,
        )
    finally:
        engine.stop_all()
    checks = {
        "all_succeeded": result.statuses == {"succeeded": args.executions},
        "no_finished_node_run_twice": not result.node_succeeded_lines_twice
        and not result.node_runs_finished_twice,
        "extra_runs_within_killed_in_flight": result.extra_node_runs <= WORKER_CONCURRENCY,
        "subscribers_saw_every_line": not result.subscriber_errors and not result.subscriber_gaps,
    }
    figures: dict[str, Any] = {
        "executions_per_s": round(args.executions / max(result.seconds_to_all_terminal, 1e-9), 1)
    }
    if not args.skip_baselines:
        from bench.baselines import measure_b2

        figures["B2_tasks_per_s"] = round(measure_b2(), 1)
    payload = {
        "machine": machine_facts(),
        "result": result.as_dict(),
        "figures": figures,
        "checks": checks,
        "verdict": "pass" if all(checks.values()) else "fail",
    }
    print(json.dumps(payload, indent=2))
    print(f"written to {write_results('scale_out', payload)}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
