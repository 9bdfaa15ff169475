"""The platform under load for end-to-end benchmarks: production mode or the embedded default.

Production: one daphne and one `celery worker -P prefork -c 5` on a bench PostgreSQL database
and Redis db of their own (`BENCH_E2E_DATABASE_URL`, `BENCH_E2E_REDIS_URL`), keys generated
per run, rate limits set very high. Embedded: `manage.py runplatform` on a temporary SQLite
file, nothing else configured. Set-up (a user, workflows) goes through the REST API only.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from bench.common import (
    PYTHON,
    ROOT,
    Process,
    celery_command,
    ensure_database,
    free_port,
    named_cpu_seconds,
    start_daphne,
    start_process,
    tree_cpu_seconds,
    wait_http,
    worker_args,
)

DATABASE_URL = os.environ.get(
    "BENCH_E2E_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_e2e"
)
REDIS_URL = os.environ.get("BENCH_E2E_REDIS_URL", "redis://127.0.0.1:6379/8")
RATE_LIMITS = {
    "RATE_LIMIT_GENERAL": "100000000/1m",
    "RATE_LIMIT_AUTH": "100000000/1m",
    "RATE_LIMIT_REFRESH": "100000000/1m",
    "RATE_LIMIT_WEBHOOK": "100000000/1m",
}
WORKER_CONCURRENCY = 5


def production_env(database_url: str = DATABASE_URL, redis_url: str = REDIS_URL) -> dict[str, str]:
    """DEBUG off, fresh keys, a bench database and Redis db, rate limits out of the way."""
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "JWT_SIGNING_KEY": secrets.token_urlsafe(50),
        "AUTOFLOW_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "WARNING",
        "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AUTOFLOW_TESTING": "",
        "PYTHONUNBUFFERED": "1",
        **RATE_LIMITS,
    }


@dataclass
class Platform:
    """Running servers: the base URL and how to read the CPU time of everything involved."""

    base_url: str
    mode: str
    processes: list[Process] = field(default_factory=list)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far per part: web, worker (whole trees), PostgreSQL, Redis."""
        parts = {process.name: tree_cpu_seconds(process.pid) for process in self.processes}
        if self.mode == "production":
            parts["postgres"] = named_cpu_seconds("postgres")
            parts["redis"] = named_cpu_seconds("redis-server")
        return parts


@contextlib.contextmanager
def production() -> Iterator[Platform]:
    """One daphne + one prefork worker on PostgreSQL + Redis (both flushed of old bench data)."""
    env = production_env()
    ensure_database(DATABASE_URL)
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
    )
    # Old bench rows would slow every run down a little more; the database is the bench's own.
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute("TRUNCATE executions_execution, workflows_workflow CASCADE")
    redis.Redis.from_url(REDIS_URL).flushdb()
    web, base_url = start_daphne("web", env)
    worker_command = celery_command("autoflow", worker_args(WORKER_CONCURRENCY))
    worker = start_process("worker", worker_command, env)
    platform = Platform(base_url=base_url, mode="production")
    platform.processes = [web, worker]
    try:
        wait_http(f"{platform.base_url}/health", timeout=60, process=web)
        _wait_worker(platform.base_url)
        yield platform
    finally:
        worker.stop()
        web.stop()


@contextlib.contextmanager
def embedded() -> Iterator[Platform]:
    """`manage.py runplatform` on a temporary SQLite file: web, worker and queue in one process."""
    directory = Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    port = free_port()
    env = {
        "DATABASE_URL": f"sqlite:///{directory / 'db.sqlite3'}",
        "LOG_LEVEL": "WARNING",
        **RATE_LIMITS,
    }
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DEBUG")}
    popen_env = {**clean, **env}
    log = Path(tempfile.mkstemp(prefix="bench-embedded-", suffix=".log")[1])
    with log.open("wb") as handle:
        popen = subprocess.Popen(
            [PYTHON, "manage.py", "runplatform", "--port", str(port), "--no-beat"],
            cwd=ROOT,
            env=popen_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Process(name="platform", popen=popen, log_path=log)
    platform = Platform(base_url=f"http://127.0.0.1:{port}", mode="embedded", processes=[server])
    try:
        wait_http(f"{platform.base_url}/health", timeout=90, process=server)
        yield platform
    finally:
        server.stop()


def _wait_worker(base_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, ValueError):
            checks = requests.get(f"{base_url}/health", timeout=5).json().get("checks", {})
            if checks.get("workers", {}).get("ok"):
                return
        time.sleep(0.5)
    raise RuntimeError("the worker did not report in within the time allowed")


class Api:
    """A signed-up user talking to the REST API."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        email = f"bench-{secrets.token_hex(4)}@example.com"
        answer = self.session.post(
            f"{base_url}/api/auth/register",
            json={"email": email, "password": secrets.token_urlsafe(16), "name": "Bench"},
            timeout=30,
        )
        answer.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {answer.json()['access']}"

    def post(self, path: str, body: Any) -> Any:
        answer = self.session.post(f"{self.base_url}{path}", json=body, timeout=30)
        if answer.status_code >= 300:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def get(self, path: str) -> Any:
        answer = self.session.get(f"{self.base_url}{path}", timeout=30)
        answer.raise_for_status()
        return answer.json()

    def workflow(self, name: str, graph: dict[str, Any]) -> str:
        """Create an active workflow; return its id."""
        return str(
            self.post("/api/workflows", {"name": name, "graph": graph, "active": True})["id"]
        )
