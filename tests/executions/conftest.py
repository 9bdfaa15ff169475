"""Execution fixtures: workflows from a graph, and a real Celery worker (+ beat) as subprocesses.

The worker serves the pytest test database, so tests that use it need `transactional_db`.
The engine's timings are shortened through its environment variables (lease, sweep interval).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection

from accounts.models import User
from executions.models import TERMINAL_STATUSES, Execution
from tests.executions import nodetypes  # noqa: F401 - registers the test node types
from tests.servers import BASE_DIR, database_url_from_settings, server_env
from workflows.models import Workflow, WorkflowVersion

STARTUP_TIMEOUT_SECONDS = 60.0
FAST_ENGINE_ENV = {
    "EXECUTION_LEASE_SECONDS": "3",
    "EXECUTION_SWEEP_SECONDS": "1",
    "EXECUTION_REQUEUE_AFTER_SECONDS": "2",
    "WORKER_CONCURRENCY": "2",
}


def make_graph(
    nodes: list[dict[str, Any]], edges: list[tuple[str, ...]], **settings: Any
) -> dict[str, Any]:
    """A graph with a manual trigger `t` first; edges are (source, target[, branch])."""
    return {
        "nodes": [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}, *nodes],
        "edges": [
            {"source": e[0], "target": e[1], **({"branch": e[2]} if len(e) > 2 else {})}
            for e in edges
        ],
        "settings": settings,
    }


def make_workflow(owner: User, graph: dict[str, Any], *, is_public: bool = False) -> Workflow:
    """A workflow at version 1 with its version row (test node types skip save validation)."""
    workflow = Workflow.objects.create(
        owner=owner, name=f"wf-{uuid.uuid4().hex[:6]}", graph=graph, is_public=is_public
    )
    WorkflowVersion.objects.create(
        workflow=workflow, version=1, name=workflow.name, graph=graph, created_by=owner
    )
    return workflow


def wait_for(predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy (bounded); return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def wait_finished(execution_id: Any, timeout: float = 30.0) -> Execution:
    """Wait until the execution reaches a terminal state; return it."""

    def finished() -> Execution | None:
        execution = Execution.objects.get(pk=execution_id)
        return execution if execution.status in TERMINAL_STATUSES else None

    return wait_for(finished, timeout=timeout)


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid`, read from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces; the parent pid follows its closing parenthesis.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_children(self) -> list[int]:
        return child_pids(self.process.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def _celery(args: list[str], env: dict[str, str], name: str) -> Worker:
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - the child process writes it
        prefix=f"{name}-", suffix=".log", delete=False
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.executions.celery_app", *args],
        cwd=BASE_DIR,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Worker(process=process, log_path=Path(log_file.name))


@dataclass
class EngineProcesses:
    """Starts workers and a beat against the test database; stops them all at the end."""

    env: dict[str, str]
    started: list[Worker]

    def worker(self, *, concurrency: int = 2) -> Worker:
        name = f"w{uuid.uuid4().hex[:6]}"
        worker = _celery(
            [
                "worker",
                "-P",
                "prefork",
                "-c",
                str(concurrency),
                "-n",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            self.env,
            name,
        )
        self.started.append(worker)
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if "ready" in worker.log_text():
                return worker
            if worker.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"celery worker did not start:\n{worker.log_text()[-4000:]}")

    def beat(self) -> Worker:
        schedule = str(Path(tempfile.mkdtemp(prefix="beat-")) / "schedule")
        beat = _celery(
            [
                "beat",
                "-S",
                "celery.beat:PersistentScheduler",
                "-s",
                schedule,
                "--max-interval",
                "1",
                "--loglevel",
                "INFO",
            ],
            self.env,
            "beat",
        )
        self.started.append(beat)
        return beat

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop(signal.SIGTERM, timeout=20)


@contextmanager
def engine_processes(django_db_blocker: Any, **extra_env: str) -> Iterator[EngineProcesses]:
    """Real Celery processes on the test database and this run's Redis (flushed first)."""
    redis_url = os.environ.get("REDIS_URL", "")
    if not redis_url:
        pytest.fail("the end-to-end engine tests need REDIS_URL (a real Redis)")
    redis.Redis.from_url(redis_url).flushdb()
    with django_db_blocker.unblock():
        database_url = database_url_from_settings(connection.settings_dict)
    env = server_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, **{**FAST_ENGINE_ENV, **extra_env}
    )
    processes = EngineProcesses(env=env, started=[])
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture
def engine(django_db_setup: Any, django_db_blocker: Any) -> Iterator[EngineProcesses]:
    """Real Celery processes for one test; start what it needs with `.worker()`, `.beat()`."""
    with engine_processes(django_db_blocker) as processes:
        yield processes


@pytest.fixture
def fast_engine(settings: Any) -> None:
    """The test process uses the same short engine timings as the workers it starts."""
    settings.EXECUTION_LEASE_SECONDS = 3
    settings.EXECUTION_SWEEP_SECONDS = 1
    settings.EXECUTION_REQUEUE_AFTER_SECONDS = 2


@pytest.fixture
def running_engine(engine: EngineProcesses, fast_engine: None) -> EngineProcesses:
    """One worker (prefork, 2 children) and a beat running the sweeper every second."""
    engine.worker()
    engine.beat()
    return engine
