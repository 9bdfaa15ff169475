"""Shared benchmark plumbing: processes, the wrk load generator, CPU accounting, reporting."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULTS_DIR = ROOT / "bench" / "results"
# Targets in the issues were set where B1 = 960 req/s and B2 = 1,430 tasks/s.
B1_REFERENCE = 960.0
B2_REFERENCE = 1430.0

WRK_REPORT = """
done = function(summary, latency, requests)
  local out = {}
  out["requests"] = summary.requests
  out["duration_us"] = summary.duration
  out["errors"] = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  out["p50_us"] = latency:percentile(50)
  out["p95_us"] = latency:percentile(95)
  out["p99_us"] = latency:percentile(99)
  local parts = {}
  for k, v in pairs(out) do parts[#parts + 1] = string.format('"%s": %s', k, v) end
  io.write("WRKJSON {" .. table.concat(parts, ", ") .. "}\\n")
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True)
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk is not installed and could not be installed with apt-get")
    return path


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children that have been waited for."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants (for a prefork worker: the main process + children)."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids.extend(tree_pids(int(child)))
    return pids


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in tree_pids(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(member)
    return total


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process tree, MiB."""
    total = 0
    for member in tree_pids(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    server_cpu_ms_per_request: float | None = None

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    warmup_seconds: float = 2.0,
    cpu_pids: list[int] | None = None,
) -> LoadResult:
    """Run wrk (a separate process, keep-alive) after a warm-up; bounded by `seconds`."""
    binary = ensure_wrk()
    script_lines = [f'wrk.method = "{method}"']
    if body is not None:
        script_lines.append(f"wrk.body = {json.dumps(body)}")
    for name, value in (headers or {}).items():
        script_lines.append(f'wrk.headers["{name}"] = {json.dumps(value)}')
    script = "\n".join(script_lines) + "\n" + WRK_REPORT
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = handle.name
    threads = max(1, min(2, connections))
    base = [binary, f"-t{threads}", f"-c{connections}", "-s", script_path, "--timeout", "10s"]
    if warmup_seconds:
        subprocess.run(
            [*base, f"-d{max(1, round(warmup_seconds))}s", url], capture_output=True, check=False
        )
    before = sum(tree_cpu_seconds(pid) for pid in cpu_pids or [])
    completed = subprocess.run(
        [*base, f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 60,
    )
    after = sum(tree_cpu_seconds(pid) for pid in cpu_pids or [])
    os.unlink(script_path)
    line = next((x for x in completed.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no report: {completed.stdout}\n{completed.stderr}")
    data = json.loads(line[len("WRKJSON ") :])
    requests_done = int(data["requests"])
    return LoadResult(
        requests=requests_done,
        seconds=data["duration_us"] / 1e6,
        errors=int(data["errors"]),
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        server_cpu_ms_per_request=(
            (after - before) * 1000 / requests_done if cpu_pids and requests_done else None
        ),
    )


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


def start_process(
    name: str, args: list[str], env: dict[str, str] | None = None, *, new_session: bool = False
) -> Process:
    """Start a logged child; `new_session` puts it in a process group of its own (killpg-able)."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    handle = log.open("wb")
    popen = subprocess.Popen(
        args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )
    return Process(name=name, popen=popen, log_path=log)


def start_daphne(
    name: str,
    env: dict[str, str] | None = None,
    *,
    app: str = "autoflow.asgi:application",
    new_session: bool = False,
) -> tuple[Process, str]:
    """One daphne serving `app` on a free loopback port; the process and its base URL.

    As production runs it (and B1 with it): `--verbosity 0`, no access log of daphne's own.
    """
    port = free_port()
    args = [PYTHON, "-m", "daphne", "--verbosity", "0", "-b", "127.0.0.1", "-p", str(port), app]
    return start_process(name, args, env, new_session=new_session), f"http://127.0.0.1:{port}"


def celery_command(app: str, args: list[str]) -> list[str]:
    return [PYTHON, "-m", "celery", "-A", app, *args]


def worker_args(concurrency: int | str = 5, *extra: str) -> list[str]:
    """`celery worker` as every benchmark runs it: the prefork pool, warnings only."""
    return ["worker", "-P", "prefork", "-c", str(concurrency), "--loglevel", "WARNING", *extra]


def stop_group(process: Process, timeout: float = 15.0) -> None:
    """SIGTERM a process group started with `new_session`, then SIGKILL what is left (bounded)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=5)


def wait_http(url: str, timeout: float = 30.0, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited:\n{process.log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    try:
        yield
    finally:
        for process in reversed(processes):
            process.stop()


@dataclass
class Figure:
    """One benchmark figure, judged against its target scaled by the same-run baselines."""

    name: str
    value: float
    unit: str
    target: float | None = None
    scaled_target: float | None = None
    higher_is_better: bool = True
    ratio: float | None = None
    runs: list[float] = field(default_factory=list)
    note: str = ""

    def judge(self) -> None:
        if self.scaled_target is None or not self.value:
            return
        self.ratio = (
            self.value / self.scaled_target
            if self.higher_is_better
            else self.scaled_target / self.value
        )


def scale_rate_b1(target: float, b1_rate: float) -> float:
    return target * b1_rate / B1_REFERENCE


def scale_latency_b1(target: float, b1_rate: float) -> float:
    return target * B1_REFERENCE / b1_rate


def scale_rate_b2(target: float, b2_rate: float) -> float:
    return target * b2_rate / B2_REFERENCE


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def print_table(title: str, figures: list[Figure], baselines: dict[str, Any]) -> None:
    print(f"\n== {title}")
    print("baselines: " + ", ".join(f"{k}={v}" for k, v in baselines.items()))
    header = f"{'figure':52} {'value':>12} {'unit':8} {'target':>10} {'scaled':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for figure in figures:
        target = "" if figure.target is None else f"{figure.target:g}"
        scaled = "" if figure.scaled_target is None else f"{figure.scaled_target:.4g}"
        ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}"
        print(
            f"{figure.name:52} {figure.value:12.4g} {figure.unit:8} {target:>10} {scaled:>10} "
            f"{ratio:>7}  {figure.note}"
        )


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(payload, indent=2, default=lambda o: asdict(o)))
    return path


def machine_facts() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": sys.version.split()[0]}


def named_cpu_seconds(name: str) -> float:
    """CPU seconds of every process called `name` (with the children each has waited for).

    For PostgreSQL this covers every backend: live ones by their own counters, exited ones
    through the postmaster's waited-for children.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == name:
                total += cpu_seconds(int(entry.name))
    return total


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database a `postgres://.../name` URL names, if it is missing."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as connection:
        if not connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def prepare_database(env: dict[str, str]) -> None:
    """Create the bench database if missing, migrate it, and empty its run tables."""
    import psycopg

    ensure_database(env["DATABASE_URL"])
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        timeout=300,
    )
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
        connection.execute("TRUNCATE executions_execution, workflows_workflow CASCADE")
