"""The load process for `engine_e2e`: POST execute, then poll the execution until it is terminal.

    python -m bench.execute_load --base URL --token JWT --workflow ID --concurrency 16 \\
        --seconds 10 [--poll 0.02]

Each of `concurrency` threads (keep-alive session) posts `/api/workflows/{id}/execute` and
polls `GET /api/executions/{id}` every `--poll` seconds until a terminal status (bounded by a
30 s timeout per execution), then starts the next, until `--seconds` pass. Prints one line
`EXECJSON {...}`: completed, errors, elapsed seconds, p50/p95 latency (POST sent → terminal
status seen) and the execution ids, so the caller can read the server-side times too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time

import requests

TERMINAL = {"succeeded", "failed", "cancelled"}
EXECUTION_TIMEOUT_SECONDS = 30.0


def _worker(args: argparse.Namespace, deadline: float, out: dict[str, list[object]]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.token}"
    execute_url = f"{args.base}/api/workflows/{args.workflow}/execute"
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            answer = session.post(execute_url, json={"input": {"a": 1, "b": 2}}, timeout=10)
            answer.raise_for_status()
            execution_id = answer.json()["execution_id"]
            status = "queued"
            give_up = time.monotonic() + EXECUTION_TIMEOUT_SECONDS
            while status not in TERMINAL and time.monotonic() < give_up:
                time.sleep(args.poll)
                polled = session.get(f"{args.base}/api/executions/{execution_id}", timeout=10)
                status = polled.json()["status"]
        except (requests.RequestException, ValueError, KeyError) as error:
            out["errors"].append(f"{type(error).__name__}: {str(error)[:200]}")
            continue
        if status != "succeeded":
            out["errors"].append(f"execution {execution_id} ended {status}")
            continue
        out["latencies"].append(time.perf_counter() - started)
        out["ids"].append(execution_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--workflow", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.005)
    args = parser.parse_args(argv)
    out: dict[str, list[object]] = {"latencies": [], "errors": [], "ids": []}
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [
        threading.Thread(target=_worker, args=(args, deadline, out), daemon=True)
        for _ in range(args.concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + EXECUTION_TIMEOUT_SECONDS + 15)
    elapsed = time.monotonic() - started
    latencies = sorted(float(x) for x in out["latencies"])  # type: ignore[arg-type]
    report = {
        "completed": len(latencies),
        "errors": len(out["errors"]),
        "error_samples": sorted({str(x) for x in out["errors"]})[:5],
        "elapsed_s": elapsed,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else None,
        "ids": out["ids"],
    }
    sys.stdout.write("EXECJSON " + json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
