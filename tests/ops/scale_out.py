"""The scale-out scenario, shared by the CI test and `bench/scale_out.py`.

Two daphne processes and three Celery worker processes on one PostgreSQL + Redis: executions
go in through both web processes, one worker is SIGKILLed mid-way, and the run is checked
from the database (every execution terminal, no finished node run twice) and from WebSocket
subscribers on each web process (every log line, in order, then `execution:complete`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from accounts.models import User
from accounts.tokens import tokens_issue
from executions.models import TERMINAL_STATUSES, Execution, ExecutionLog, NodeRun
from tests.executions.conftest import EngineProcesses, make_graph, make_workflow
from tests.executions.nodetypes import runs_of
from tests.servers import ServerUrl, daphne_server
from workflows.models import Workflow

# Each node takes a little while, so a worker killed mid-way holds nodes in flight.
NODE_IDS = ("a", "b", "c")
WORKER_COUNT = 3
WORKER_CONCURRENCY = 2
# Rate limits out of the way: this is about correctness under load, not throttling.
WEB_ENV = {"RATE_LIMIT_GENERAL": "1000000/1m"}
# AutoFlow's ASGI app plus the test node types, so execute validates graphs that use them.
ASGI_APPLICATION = "tests.ops.asgi_app:application"


def scale_out_graph(sleep_seconds: float) -> dict[str, Any]:
    return make_graph(
        [
            {"id": "a", "type": "test_sleep", "params": {"seconds": sleep_seconds}},
            {"id": "b", "type": "test_sleep", "params": {"seconds": sleep_seconds}},
            {"id": "c", "type": "test_emit", "params": {"value": "{{ input.n }}"}},
        ],
        [("t", "a"), ("a", "b"), ("b", "c")],
    )


@dataclass
class Subscriber:
    """A WebSocket client on one web process, following some executions to their end."""

    url: str
    token: str
    execution_ids: list[str]
    timeout: float
    seqs: dict[str, list[int]] = field(default_factory=dict)
    completed: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise AssertionError(f"subscriber on {self.url} did not subscribe: {self.error}")

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(self.timeout + 10)

    def _run(self) -> None:
        ws_url = self.url.replace("http://", "ws://") + "/ws"
        try:
            with connect(
                ws_url,
                subprotocols=[Subprotocol("autoflow.v1"), Subprotocol(f"bearer.{self.token}")],
                open_timeout=20,
            ) as socket:
                for execution_id in self.execution_ids:
                    self.seqs[execution_id] = []
                    socket.send(
                        json.dumps({"type": "subscribe:execution", "execution_id": execution_id})
                    )
                subscribed = 0
                deadline = time.monotonic() + self.timeout
                while len(self.completed) < len(self.execution_ids):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.error = f"timed out; completed {len(self.completed)}"
                        return
                    message = json.loads(socket.recv(timeout=left))
                    kind = message.get("type")
                    if kind == "subscribed":
                        subscribed += 1
                        if subscribed == len(self.execution_ids):
                            self.ready.set()
                    elif kind == "execution:logs":
                        seqs = self.seqs[message["execution_id"]]
                        seqs.extend(line["seq"] for line in message["lines"])
                        socket.send(
                            json.dumps(
                                {
                                    "type": "ack",
                                    "execution_id": message["execution_id"],
                                    "seq": seqs[-1],
                                }
                            )
                        )
                    elif kind == "execution:complete":
                        self.completed[message["execution_id"]] = message["status"]
                    elif kind == "error":
                        self.error = f"server error: {message}"
                        return
        except Exception as error:  # reported by the test, with the subscriber's url
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.ready.set()


@dataclass
class ScaleOutResult:
    executions: int
    statuses: dict[str, int]
    seconds_to_all_terminal: float
    killed_worker_pid: int
    extra_node_runs: int
    node_runs_finished_twice: list[str]
    node_succeeded_lines_twice: list[str]
    recovered_executions: int
    subscriber_errors: list[str]
    subscriber_gaps: list[str]
    started_per_web: dict[str, int]
    succeeded_node_runs: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _execute(url: str, token: str, workflow: Workflow, n: int) -> str:
    response = requests.post(
        f"{url}/api/workflows/{workflow.pk}/execute",
        json={"input": {"n": n}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def _wait(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _terminal_count(ids: list[str]) -> int:
    return Execution.objects.filter(pk__in=ids, status__in=TERMINAL_STATUSES).count()


def run_scale_out(
    *,
    owner: User,
    engine: EngineProcesses,
    executions: int,
    sleep_seconds: float = 0.05,
    watched_per_web: int = 3,
    timeout: float = 180.0,
) -> ScaleOutResult:
    """Run the scenario and measure it; the caller asserts on the result."""
    workflow = make_workflow(owner, scale_out_graph(sleep_seconds))
    token = tokens_issue(user=owner)["access"]
    web_env = {**engine.env, **WEB_ENV}
    with contextlib.ExitStack() as stack:
        webs: list[ServerUrl] = [
            stack.enter_context(daphne_server("tests.ops.asgi_app:application", **web_env))
            for _ in range(2)
        ]
        engine.beat()  # the sweeper: takes over the killed worker's runs when leases lapse

        # Executions queued before any worker runs, each watched from the *other* web process.
        ids: list[str] = []
        started_per_web: Counter[str] = Counter()
        watched: list[list[str]] = [[], []]
        for n in range(2 * watched_per_web):
            web = n % 2
            ids.append(_execute(webs[web], token, workflow, n))
            started_per_web[webs[web]] += 1
            watched[1 - web].append(ids[-1])
        subscribers = [
            Subscriber(url=webs[i], token=token, execution_ids=watched[i], timeout=timeout)
            for i in range(2)
        ]
        for subscriber in subscribers:
            subscriber.start()

        workers = [engine.worker(concurrency=WORKER_CONCURRENCY) for _ in range(WORKER_COUNT)]
        began = time.monotonic()
        victim = workers[0]
        killed = False
        for n in range(len(ids), executions):
            web = n % 2
            ids.append(_execute(webs[web], token, workflow, n))
            started_per_web[webs[web]] += 1
            if not killed and n >= executions // 3:
                # Mid-way: the victim has runs in flight and more queued behind them.
                os.killpg(victim.process.pid, signal.SIGKILL)
                killed = True
        if not killed:
            os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)

        all_done = _wait(lambda: _terminal_count(ids) == len(ids), timeout)
        seconds = time.monotonic() - began
        for subscriber in subscribers:
            subscriber.join()
        if not all_done:
            stuck = list(
                Execution.objects.filter(pk__in=ids)
                .exclude(status__in=TERMINAL_STATUSES)
                .values_list("pk", "status")[:10]
            )
            raise AssertionError(f"not every execution finished in {timeout} s: {stuck}")

    statuses = Counter(Execution.objects.filter(pk__in=ids).values_list("status", flat=True))
    # A node run that finished (a "Node succeeded" line) must never run again; an interrupted
    # one may, so extra runs are bounded by what the killed worker held in flight.
    succeeded_lines = Counter(
        ExecutionLog.objects.filter(
            execution_id__in=ids, message__startswith="Node succeeded"
        ).values_list("execution_id", "node_id")
    )
    lines_twice = [f"{e}:{node}" for (e, node), count in succeeded_lines.items() if count > 1]
    extra = 0
    finished_twice = []
    for execution_id in ids:
        for node_id in NODE_IDS:
            runs = runs_of(execution_id, node_id)
            extra += max(runs - 1, 0)
            if runs > 2:
                finished_twice.append(f"{execution_id}:{node_id} ran {runs} times")
    gaps = []
    for subscriber in subscribers:
        for execution_id, seqs in subscriber.seqs.items():
            stored = ExecutionLog.objects.filter(execution_id=execution_id).count()
            if seqs != list(range(1, stored + 1)):
                gaps.append(f"{subscriber.url} {execution_id}: got {seqs}, stored 1..{stored}")
            if execution_id not in subscriber.completed:
                gaps.append(f"{subscriber.url} {execution_id}: no execution:complete")
    return ScaleOutResult(
        executions=len(ids),
        statuses=dict(statuses),
        seconds_to_all_terminal=round(seconds, 2),
        killed_worker_pid=victim.process.pid,
        extra_node_runs=extra,
        node_runs_finished_twice=finished_twice,
        node_succeeded_lines_twice=lines_twice,
        recovered_executions=Execution.objects.filter(pk__in=ids, recovery_count__gt=0).count(),
        subscriber_errors=[f"{s.url}: {s.error}" for s in subscribers if s.error],
        subscriber_gaps=gaps,
        started_per_web={str(url): count for url, count in started_per_web.items()},
        succeeded_node_runs=NodeRun.objects.filter(
            execution_id__in=ids, status="succeeded"
        ).count(),
    )
