"""Real-server fixtures: daphne (and `manage.py runplatform`) as subprocesses on loopback.

`live_daphne` serves the pytest test database, so tests that use it need `transactional_db`
(the server only sees committed data). Helpers here start any number of extra servers with
their own environment, e.g. one whose database is unreachable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

BASE_DIR = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0


class ServerUrl(str):
    """A server's base URL (`http://127.0.0.1:<port>`) that also knows its log file."""

    log_path: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port that refuses connections (for 'dependency down' tests)."""
    return free_port()


def database_url_from_settings(settings_dict: Mapping[str, Any]) -> str:
    """A DATABASE_URL naming the database Django is connected to (the test one in pytest)."""
    engine = settings_dict["ENGINE"]
    if "sqlite" in engine:
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or "postgres"
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{password}" if password else user
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}@{host}:{port}/{settings_dict['NAME']}"


def server_env(**overrides: str | None) -> dict[str, str]:
    """The test process's environment with overrides (None removes a variable)."""
    env = dict(os.environ)
    env["AUTOFLOW_TESTING"] = "1"  # fast password hasher, static files from finders
    env.setdefault("LOG_FORMAT", "json")
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def wait_until_serving(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Poll `/health` until the server answers at all (any status), or fail with its log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            requests.get(f"{url}/health", timeout=10)
        except requests.RequestException:
            time.sleep(0.2)
            continue
        return
    raise RuntimeError(f"server did not answer within 60 s:\n{log_path.read_text()}")


@contextlib.contextmanager
def run_server(command: list[str], env: Mapping[str, str], port: int) -> Iterator[ServerUrl]:
    """Run a server subprocess until the block ends; yield its base URL."""
    log_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the server's life
        prefix="autoflow-server-", suffix=".log", delete=False
    )
    log_path = Path(log_file.name)
    process = subprocess.Popen(
        command, cwd=BASE_DIR, env=dict(env), stdout=log_file, stderr=subprocess.STDOUT
    )
    url = ServerUrl(f"http://127.0.0.1:{port}")
    url.log_path = log_path
    url.process = process
    try:
        wait_until_serving(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log_file.close()


def daphne_command(port: int, application: str = "autoflow.asgi:application") -> list[str]:
    """The command line of `daphne <application>` on a loopback `port`, as production runs it.

    `--verbosity 0` turns daphne's own access log off: AutoFlow logs every request as JSON.
    """
    return [
        sys.executable,
        "-m",
        "daphne",
        "--verbosity",
        "0",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        application,
    ]


@contextlib.contextmanager
def daphne_server(
    application: str = "autoflow.asgi:application", **env_overrides: str | None
) -> Iterator[ServerUrl]:
    """`daphne <application>` (AutoFlow's by default) on a free loopback port."""
    port = free_port()
    with run_server(daphne_command(port, application), server_env(**env_overrides), port) as url:
        yield url


@pytest.fixture(scope="session")
def live_daphne(django_db_setup: Any, django_db_blocker: Any) -> Iterator[ServerUrl]:
    """A daphne process serving the pytest test database and the same Redis; yields its URL."""
    from django.db import connection

    with django_db_blocker.unblock():
        database_url = database_url_from_settings(connection.settings_dict)
    with daphne_server(DATABASE_URL=database_url) as url:
        yield url
