"""Dockerfile and docker-compose.yml, read against what the tests run (no Docker engine here).

The health-check commands are executed for real against a live daphne and a real pidfile.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import BASE_DIR, ServerUrl, closed_port, daphne_command

DOCKERFILE = (BASE_DIR / "Dockerfile").read_text()
# One line per instruction: continuation lines joined, as Docker reads them.
INSTRUCTIONS = re.sub(r"\\\n\s*", " ", DOCKERFILE)
COMPOSE: dict[str, Any] = yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def _dockerfile_json(instruction: str) -> list[str]:
    """The exec-form array of the last `instruction` line (e.g. CMD, or HEALTHCHECK's CMD)."""
    pattern = rf"^{instruction}\s.*?(\[.*\])\s*$"
    matches = re.findall(pattern, INSTRUCTIONS, flags=re.MULTILINE)
    assert matches, f"no {instruction} in the Dockerfile"
    return list(json.loads(matches[-1]))


def _run_python_check(argv: list[str]) -> int:
    assert argv[0] == "python"
    result = subprocess.run(
        [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30, check=False
    )
    print(result.stderr)  # noqa: T201 - why a check failed, shown when the test fails
    return result.returncode


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER autoflow$", DOCKERFILE, flags=re.MULTILINE)
    assert "COPY --from=builder /opt/venv /opt/venv" in DOCKERFILE
    # Only the runtime dependencies are installed; the dev extra never is.
    assert "['project']['dependencies']" in DOCKERFILE
    assert "[dev]" not in DOCKERFILE
    assert "collectstatic --noinput" in DOCKERFILE


def test_default_command_and_compose_web_match_the_daphne_tests_start() -> None:
    expected = ["daphne", "--verbosity", "0", "-b", "0.0.0.0", "-p", "8000"]  # noqa: S104
    expected.append("autoflow.asgi:application")
    assert _dockerfile_json("CMD") == expected
    assert SERVICES["web"]["command"] == expected
    # The same flags as the daphne the tests start (`python -m daphne`), on loopback.
    on_loopback = [arg.replace("0.0.0.0", "127.0.0.1") for arg in expected[1:]]  # noqa: S104
    assert daphne_command(8000)[3:] == on_loopback


def test_compose_worker_and_beat_run_the_celery_app_the_tests_run() -> None:
    worker = " ".join(SERVICES["worker"]["command"])
    beat = SERVICES["beat"]["command"]
    assert "exec celery -A autoflow worker" in worker
    assert "--concurrency $${WORKER_CONCURRENCY" in worker
    assert beat[:4] == ["celery", "-A", "autoflow", "beat"]
    assert SERVICES["worker"]["healthcheck"]["test"][1].startswith(
        "celery -A autoflow inspect ping -d celery@$$HOSTNAME"
    )


def test_compose_wiring() -> None:
    assert set(SERVICES) == {"postgres", "redis", "migrate", "web", "worker", "beat"}
    assert "postgres-data:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]
    for name in ("web", "worker", "beat"):
        depends = SERVICES[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert SERVICES[name]["env_file"] == ".env"
        assert "healthcheck" in SERVICES[name]
    assert SERVICES["web"]["healthcheck"]["test"] == ["CMD", *_dockerfile_json("HEALTHCHECK")]


@pytest.mark.e2e
def test_web_health_check_passes_on_a_live_server_and_fails_without_one(
    transactional_db: None, live_daphne: ServerUrl
) -> None:
    check = _dockerfile_json("HEALTHCHECK")
    script = check[2]
    live = [*check[:2], script.replace("http://127.0.0.1:8000", str(live_daphne))]
    dead = [*check[:2], script.replace("127.0.0.1:8000", f"127.0.0.1:{closed_port()}")]

    assert _run_python_check(live) == 0
    assert _run_python_check(dead) != 0


def test_beat_health_check_follows_the_pidfile(tmp_path: Path) -> None:
    check: list[str] = SERVICES["beat"]["healthcheck"]["test"][1:]
    pidfile = "/tmp/celerybeat.pid"
    assert f"--pidfile {pidfile}" in shlex.join(SERVICES["beat"]["command"])
    alive, gone = tmp_path / "alive.pid", tmp_path / "gone.pid"
    alive.write_text(str(os.getpid()))
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(10)
    gone.write_text(str(finished.pid))

    def run(path: Path) -> int:
        return _run_python_check([check[0], check[1], check[2].replace(pidfile, str(path))])

    assert run(alive) == 0
    assert run(gone) != 0
    assert run(tmp_path / "missing.pid") != 0
