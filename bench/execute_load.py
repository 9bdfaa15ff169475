"""The load process for `engine_e2e`: POST execute, then watch the execution until it is terminal.

    python -m bench.execute_load --base URL --token JWT --workflow ID --concurrency 16 \\
        --seconds 10 [--watch ws | --watch poll --poll 0.02]

Each of `concurrency` threads (keep-alive session) posts `/api/workflows/{id}/execute`, then
waits for a terminal status (bounded by a 30 s timeout per execution) and starts the next,
until `--seconds` pass. It waits in one of two ways, as a client of the product would:
- `ws`: its own `/ws` socket; `subscribe:execution` right after the POST, then read until
  `execution:complete` (SPEC.md sends it at once for an execution already finished), then
  `unsubscribe:execution`;
- `poll`: `GET /api/executions/{id}` every `--poll` seconds.

Prints one line `EXECJSON {...}`: completed, errors, elapsed seconds, p50/p95 latency (POST
sent → terminal status seen) and the execution ids, so the caller can read the server-side
times too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

TERMINAL = {"succeeded", "failed", "cancelled"}
EXECUTION_TIMEOUT_SECONDS = 30.0


class _Poller:
    """Wait by polling the execution's detail endpoint."""

    def __init__(self, args: argparse.Namespace, session: requests.Session) -> None:
        self.args = args
        self.session = session

    def wait(self, execution_id: str, give_up: float) -> str:
        status = "queued"
        while status not in TERMINAL and time.monotonic() < give_up:
            time.sleep(self.args.poll)
            url = f"{self.args.base}/api/executions/{execution_id}"
            status = self.session.get(url, timeout=10).json()["status"]
        return status


class _Watcher:
    """Wait for `execution:complete` on a WebSocket subscription."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self._receive(time.monotonic() + 10, lambda message: message["type"] == "connected")

    def wait(self, execution_id: str, give_up: float) -> str:
        self._send({"type": "subscribe:execution", "execution_id": execution_id})
        complete = self._receive(
            give_up,
            lambda message: (
                message["type"] == "execution:complete" and message["execution_id"] == execution_id
            ),
        )
        self._send({"type": "unsubscribe:execution", "execution_id": execution_id})
        return "timeout" if complete is None else str(complete["status"])

    def _send(self, message: dict[str, object]) -> None:
        self.socket.send(json.dumps(message))

    def _receive(
        self, give_up: float, wanted: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        while (remaining := give_up - time.monotonic()) > 0:
            try:
                message: dict[str, Any] = json.loads(self.socket.recv(timeout=remaining))
            except TimeoutError:
                return None
            if message["type"] == "error":
                raise RuntimeError(f"server error: {message}")
            if wanted(message):
                return message
        return None


def _worker(args: argparse.Namespace, deadline: float, out: dict[str, list[object]]) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {args.token}"
    waiter: _Poller | _Watcher = _Poller(args, session)
    try:
        with contextlib.ExitStack() as stack:
            if args.watch == "ws":
                ws_url = args.base.replace("http://", "ws://", 1) + "/ws"
                protocols = [Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{args.token}")]
                waiter = _Watcher(stack.enter_context(connect(ws_url, subprotocols=protocols)))
            while time.monotonic() < deadline:
                _execute_once(args, session, waiter, out)
    except (OSError, WebSocketException, RuntimeError) as error:
        out["errors"].append(f"{type(error).__name__}: {str(error)[:200]}")


def _execute_once(
    args: argparse.Namespace,
    session: requests.Session,
    waiter: _Poller | _Watcher,
    out: dict[str, list[object]],
) -> None:
    started = time.perf_counter()
    try:
        answer = session.post(
            f"{args.base}/api/workflows/{args.workflow}/execute",
            json={"input": {"a": 1, "b": 2}},
            timeout=10,
        )
        answer.raise_for_status()
        execution_id = answer.json()["execution_id"]
        status = waiter.wait(execution_id, time.monotonic() + EXECUTION_TIMEOUT_SECONDS)
    except (requests.RequestException, ValueError, KeyError) as error:
        out["errors"].append(f"{type(error).__name__}: {str(error)[:200]}")
        return
    if status != "succeeded":
        out["errors"].append(f"execution {execution_id} ended {status}")
        return
    out["latencies"].append(time.perf_counter() - started)
    out["ids"].append(execution_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--workflow", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--watch", choices=["ws", "poll"], default="ws")
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between polls")
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
