"""A separate load process: POST one JSON body `--count` times at `--concurrency`, keep-alive.

    python -m bench.post_load --url URL --count 1000 --concurrency 16 \\
        [--header "Authorization: Bearer ..."] [--body '{"input": {}}']

Prints one line `POSTJSON {...}`: first send and last answer (epoch seconds), status counts,
and the p50/p95 of the answers. Bounded: exactly `count` requests, each with a timeout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests


def _parse_headers(raw: list[str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    for line in raw:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.post_load")
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default="{}")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    headers = _parse_headers(args.header)
    body = args.body.encode()
    local = threading.local()
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    first_error: list[str] = []

    def post(_: int) -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        try:
            answer = session.post(args.url, data=body, headers=headers, timeout=args.timeout)
            status = str(answer.status_code)
            if answer.status_code >= 300 and not first_error:
                first_error.append(answer.text[:300])
        except requests.RequestException as error:
            status = type(error).__name__
            if not first_error:
                first_error.append(str(error)[:300])
        elapsed = time.perf_counter() - started
        with lock:
            statuses[status] += 1
            latencies.append(elapsed)

    first_send = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(post, range(args.count)))
    last_answer = time.time()
    latencies.sort()
    report = {
        "count": args.count,
        "concurrency": args.concurrency,
        "first_send": first_send,
        "last_answer": last_answer,
        "rate": args.count / max(last_answer - first_send, 1e-9),
        "statuses": dict(statuses),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p95_ms": latencies[int(len(latencies) * 0.95) - 1] * 1000 if latencies else 0.0,
        "first_error": first_error[0] if first_error else "",
    }
    print("POSTJSON " + json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
