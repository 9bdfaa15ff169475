"""The WebSocket benchmark's client process (the `websockets` library), on loopback.

    python -m bench.ws_client latency WS_URL SETUP.json OUT.json
    python -m bench.ws_client sockets WS_URL SETUP.json OUT.json

`latency`: subscribe to the execution, give the worker its go (a Redis key), then record
arrival minus `data.committed_at` for every benchmark line until `execution:complete`.
`sockets`: open one subscribed socket per execution (bounded concurrency), report ready (a
Redis key), wait until each got an `execution:logs` message, then close them all.
Every wait is bounded; the result is written as JSON to OUT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

# The worker module reads these too; this one stays free of Django.
GO_KEY = "bench:ws:go"
MARKER = "bench_ws"
READY_KEY = "bench:ws:sockets:ready"
FAILED_KEY = "bench:ws:sockets:failed"


def _protocols(token: str) -> list[Subprotocol]:
    return [Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{token}")]


async def _expect(socket: ClientConnection, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind} within {timeout} s")
        message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), remaining))
        if message["type"] == kind:
            return message
        if message["type"] == "error":
            raise RuntimeError(f"server error: {message}")


async def latency(url: str, setup: dict[str, Any], timeout: float) -> dict[str, Any]:
    execution_id = setup["execution_id"]
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    latencies: list[float] = []
    result: dict[str, Any] = {"unstamped": 0, "messages": 0, "other_lines": 0, "complete": None}
    async with connect(url, subprotocols=_protocols(setup["token"]), max_size=None) as socket:
        await _expect(socket, "connected", 10)
        await socket.send(json.dumps({"type": "subscribe:execution", "execution_id": execution_id}))
        await _expect(socket, "subscribed", 10)
        client.set(GO_KEY, "1", ex=600)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(socket.recv(), deadline - time.monotonic())
            arrived = time.time()
            message = json.loads(raw)
            if message["type"] == "execution:complete":
                result["complete"] = message["status"]
                break
            if message["type"] != "execution:logs":
                continue
            result["messages"] += 1
            for line in message["lines"]:
                data = line.get("data")
                if not isinstance(data, dict) or not data.get(MARKER):
                    result["other_lines"] += 1
                elif "committed_at" in data:
                    latencies.append((arrived - float(data["committed_at"])) * 1000)
                else:
                    result["unstamped"] += 1  # delivered from the database (a gap fill)
            ack = {"type": "ack", "execution_id": execution_id, "seq": message["lines"][-1]["seq"]}
            await socket.send(json.dumps(ack))
    result["latencies_ms"] = latencies
    return result


async def sockets(
    url: str, setup: dict[str, Any], timeout: float, concurrency: int
) -> dict[str, Any]:
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    gate = asyncio.Semaphore(concurrency)
    opened: list[tuple[ClientConnection, str]] = []
    failures: list[str] = []

    async def open_one(execution_id: str) -> None:
        async with gate:
            try:
                socket = await connect(
                    url, subprotocols=_protocols(setup["token"]), open_timeout=30
                )
                await _expect(socket, "connected", 30)
                await socket.send(
                    json.dumps({"type": "subscribe:execution", "execution_id": execution_id})
                )
                await _expect(socket, "subscribed", 30)
                opened.append((socket, execution_id))
            except Exception as error:
                failures.append(repr(error))

    started = time.monotonic()
    await asyncio.gather(*(open_one(execution_id) for execution_id in setup["execution_ids"]))
    open_seconds = time.monotonic() - started
    client.set(READY_KEY, len(opened), ex=600)
    client.set(FAILED_KEY, len(failures), ex=600)

    arrivals: list[float] = []

    async def receive_one(socket: ClientConnection, execution_id: str) -> bool:
        try:
            message = await _expect(socket, "execution:logs", timeout)
        except Exception as error:
            failures.append(f"receive: {error!r}")
            return False
        arrivals.append(time.time())
        return bool(message["execution_id"] == execution_id and message["lines"])

    received = await asyncio.gather(*(receive_one(s, e) for s, e in opened))
    await asyncio.gather(*(socket.close() for socket, _ in opened), return_exceptions=True)
    return {
        "opened": len(opened),
        "failures": failures[:5],
        "failed": len(failures),
        "open_seconds": open_seconds,
        "received": sum(received),
        "first_received_at": min(arrivals, default=None),
        "last_received_at": max(arrivals, default=None),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["latency", "sockets"])
    parser.add_argument("url")
    parser.add_argument("setup", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args(argv)
    setup = json.loads(args.setup.read_text())
    if args.mode == "latency":
        result = asyncio.run(latency(args.url, setup, args.timeout))
    else:
        result = asyncio.run(sockets(args.url, setup, args.timeout, args.concurrency))
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
