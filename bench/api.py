"""API latency under load: list/get/create/execute against 10,000 workflows and 100,000 runs.

Production mode (DEBUG=false, PostgreSQL, Redis, one daphne process, one
`celery worker -P prefork -c 5`), wrk from a separate process with keep-alive at
concurrency 16 (p50/p95/p99 and req/s) and at concurrency 1 (p50). Target (SPEC.md "Limits"):
API P95 < 200 ms at c=16, scaled by 960/B1; each endpoint's req/s is shown next to B1's. Peak
RSS of the web process and of the worker (main + pool children) is printed, unscaled.

The seed (100 owners, 10,000 workflows with varied tags and their version rows, 100,000
executions with their node runs) is written once into its own database and kept; each run
deletes only what the previous run's create/execute calls added.

    .venv/bin/python -m bench api            # baselines first, then this part
    BENCH_API_SECONDS=3 BENCH_API_RUNS=1 .venv/bin/python -m bench api   # a quick check
    .venv/bin/python -m bench.api profile workflow-list   # cProfile one endpoint in process

Environment: BENCH_API_DATABASE_URL (default autoflow_bench_api on the local PostgreSQL),
BENCH_API_REDIS_URL (default Redis db 12, flushed at start), BENCH_API_SECONDS (10),
BENCH_API_RUNS (3: the figure is the median over the runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench import servers
from bench.baselines import Baselines
from bench.common import (
    PYTHON,
    Figure,
    LoadResult,
    Process,
    celery_command,
    ensure_database,
    median,
    peak_rss_mb,
    running,
    scale_latency_b1,
    start_daphne,
    start_process,
    wait_http,
    worker_args,
    wrk,
)

DATABASE_URL = os.environ.get(
    "BENCH_API_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/autoflow_bench_api"
)
REDIS_URL = os.environ.get("BENCH_API_REDIS_URL", "redis://127.0.0.1:6379/12")
SECONDS = float(os.environ.get("BENCH_API_SECONDS", "10"))
RUNS = max(1, int(os.environ.get("BENCH_API_RUNS", "3")))
CONNECTIONS = 16
P95_TARGET_MS = 200.0
OWNERS = 100
WORKFLOWS = 10_000
EXECUTIONS = 100_000
SEED_EMAIL = "bench-api-{index}@example.com"
WRITER_EMAIL = "bench-api-writer@example.com"
COMMON_TAGS = ["prod", "staging", "daily", "billing", "crm", "marketing", "ops", "alerts"]
RARE_TAGS = [f"team-{index}" for index in range(60)]
SEED_RANDOM = 20260501


def server_env() -> dict[str, str]:
    """Production settings with fresh secrets for this run (the seed step mints tokens too)."""
    return {
        **servers.production_env(DATABASE_URL, REDIS_URL),
        "ACCESS_TOKEN_MINUTES": "240",
        "DJANGO_SETTINGS_MODULE": "autoflow.settings",
    }


# --- Seed (runs in a subprocess with server_env(), so this process never imports Django) ---


def _graph(rng: Any, steps: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "t", "type": "trigger", "params": {"mode": "manual"}}]
    edges = []
    previous = "t"
    for index in range(steps):
        node_id = f"n{index}"
        if rng.random() < 0.4:
            params = {"method": "GET", "url": f"https://api.example.org/items/{index}"}
            nodes.append({"id": node_id, "type": "http", "params": params})
        else:
            nodes.append({"id": node_id, "type": "debug", "params": {"message": f"step {index}"}})
        edges.append({"source": previous, "target": node_id})
        previous = node_id
    return {"nodes": nodes, "edges": edges}


def _copy_rows(table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Load rows with PostgreSQL COPY (an order of magnitude faster than INSERTs)."""
    from django.db import connection

    with connection.cursor() as cursor:
        raw = cursor.cursor
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with raw.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)


def _seed_database() -> None:
    """Write the seed once: owners, workflows with their versions, executions and node runs."""
    import datetime as dt
    import random
    import uuid

    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone

    from accounts.models import User
    from executions.models import Execution, NodeRun
    from workflows.models import Workflow, WorkflowVersion

    rng = random.Random(SEED_RANDOM)
    password = make_password(None)
    now = timezone.now()
    with transaction.atomic():
        owners = User.objects.bulk_create(
            [
                User(email=SEED_EMAIL.format(index=index), name=f"Owner {index}", password=password)
                for index in range(OWNERS)
            ]
        )
        workflows: list[Workflow] = []
        versions: list[WorkflowVersion] = []
        steps_of: dict[uuid.UUID, int] = {}
        for index in range(WORKFLOWS):
            steps = rng.randint(1, 4)
            tags = rng.sample(COMMON_TAGS, rng.randint(0, 3))
            if rng.random() < 0.3:
                tags.append(rng.choice(RARE_TAGS))
            created = now - dt.timedelta(days=rng.uniform(0, 365))
            workflow = Workflow(
                owner=owners[index % OWNERS],
                name=f"{rng.choice(['Sync', 'Notify', 'Import', 'Report'])} {index}",
                description=rng.choice(["", "Nightly job", "Sends a digest to the team"]),
                graph=_graph(rng, steps),
                tags=tags,
                is_public=rng.random() < 0.1,
                active=rng.random() < 0.5,
                version=rng.randint(1, 3),
                created_at=created,
                updated_at=created + dt.timedelta(days=rng.uniform(0, 30)),
            )
            workflows.append(workflow)
            steps_of[workflow.id] = steps
            for number in range(1, workflow.version + 1):
                versions.append(
                    WorkflowVersion(
                        workflow=workflow,
                        version=number,
                        name=workflow.name,
                        description=workflow.description,
                        graph=workflow.graph,
                        tags=workflow.tags,
                        created_by=workflow.owner,
                        created_at=workflow.created_at,
                    )
                )
        Workflow.objects.bulk_create(workflows, batch_size=2000)
        WorkflowVersion.objects.bulk_create(versions, batch_size=2000)
        latest = {
            workflow_id: (version_id, number)
            for workflow_id, version_id, number in WorkflowVersion.objects.filter(
                workflow__owner__in=owners
            )
            .order_by("version")
            .values_list("workflow_id", "id", "version")
        }
        executions: list[tuple[Any, ...]] = []
        node_runs: list[tuple[Any, ...]] = []
        statuses = ["succeeded"] * 8 + ["failed", "cancelled"]
        for _ in range(EXECUTIONS):
            workflow = workflows[rng.randrange(WORKFLOWS)]
            version_id, number = latest[workflow.id]
            execution_id = uuid.uuid4()
            status = rng.choice(statuses)
            created = now - dt.timedelta(seconds=rng.uniform(0, 90 * 86400))
            duration = rng.randint(5, 5000)
            finished = created + dt.timedelta(milliseconds=duration)
            error = (
                json.dumps({"code": "node_failed", "message": "HTTP 502", "node_id": "n0"})
                if status == "failed"
                else None
            )
            output = json.dumps({"ok": True}) if status == "succeeded" else None
            executions.append(
                (
                    execution_id,
                    workflow.id,
                    number,
                    version_id,
                    status,
                    "manual",
                    json.dumps({"n": 1}),
                    output,
                    error,
                    workflow.owner_id,
                    created,
                    created,
                    finished,
                    duration,
                    "",
                    0,
                    False,
                    1,
                    "",
                )
            )
            for position in range(steps_of[workflow.id] + 1):
                node_id = "t" if position == 0 else f"n{position - 1}"
                node_runs.append(
                    (
                        execution_id,
                        node_id,
                        "trigger" if position == 0 else "debug",
                        position,
                        "succeeded",
                        1,
                        created,
                        finished,
                        json.dumps({"message": "step"}),
                        False,
                        "",
                        "",
                    )
                )
        _copy_rows(
            Execution._meta.db_table,
            [
                "id",
                "workflow_id",
                "workflow_version",
                "version_id",
                "status",
                "trigger",
                "input",
                "output",
                "error",
                "created_by_id",
                "created_at",
                "started_at",
                "finished_at",
                "duration_ms",
                "lease_owner",
                "recovery_count",
                "cancel_requested",
                "next_log_seq",
                "notify_channel",
            ],
            executions,
        )
        _copy_rows(
            NodeRun._meta.db_table,
            [
                "execution_id",
                "node_id",
                "type",
                "position",
                "status",
                "attempts",
                "started_at",
                "finished_at",
                "output",
                "cached",
                "branch",
                "wait_kind",
            ],
            node_runs,
        )


def _clear_previous_writes(writer: Any) -> None:
    """Delete what the last run's create and execute calls added (all owned by the writer)."""
    from django.db import connection

    from executions.models import Execution, ExecutionLog, IdempotencyRecord, NodeRun
    from workflows.models import Workflow, WorkflowVersion

    executions = Execution.objects.filter(workflow__owner=writer).values("pk")
    with connection.cursor() as cursor:
        # Raw deletes in dependency order: the ORM would load every row of a long run first.
        for model, column in (
            (IdempotencyRecord, "execution_id"),
            (ExecutionLog, "execution_id"),
            (NodeRun, "execution_id"),
        ):
            sql, params = executions.query.sql_with_params()
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE {column} IN ({sql})",  # noqa: S608
                params,
            )
    Execution.objects.filter(workflow__owner=writer).update(retry_of=None)
    Execution.objects.filter(workflow__owner=writer)._raw_delete(Execution.objects.db)
    WorkflowVersion.objects.filter(workflow__owner=writer)._raw_delete(WorkflowVersion.objects.db)
    Workflow.objects.filter(owner=writer).delete()


def _vacuum() -> None:
    """Start every run from the same physical state: vacuumed and analysed.

    The seed's bulk inserts and each run's cleanup leave the tables without a visibility map
    and with dead rows until autovacuum comes by, and the list counts' plans depend on it: the
    execution list's count took 39 ms as a hash join over every row before a vacuum and 0.6 ms
    as an index-only nested loop after. A live installation is vacuumed as it goes.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


def seed() -> dict[str, str]:
    """Migrate, seed once, and return the tokens and ids the load runs use."""
    import django
    from django.core.management import call_command

    django.setup()
    from django.contrib.auth.hashers import make_password

    from accounts.models import User
    from accounts.tokens import tokens_issue
    from executions.models import Execution
    from tests.factories import simple_graph
    from workflows.models import Workflow
    from workflows.services import workflow_create

    call_command("migrate", verbosity=0, interactive=False)
    seeded = Workflow.objects.filter(owner__email=SEED_EMAIL.format(index=0)).exists()
    if not seeded:
        started = time.monotonic()
        _seed_database()
        print(f"seeded in {time.monotonic() - started:.0f} s", file=sys.stderr)
    reader = User.objects.get(email=SEED_EMAIL.format(index=0))
    writer, _ = User.objects.get_or_create(
        email=WRITER_EMAIL, defaults={"name": "Bench Writer", "password": make_password(None)}
    )
    _clear_previous_writes(writer)
    _vacuum()
    target = workflow_create(owner=writer, name="bench execute", graph=simple_graph("bench"))
    workflow_id = (
        Workflow.objects.filter(owner=reader).order_by("-updated_at").values_list("pk", flat=True)
    )[5]
    execution_id = (
        Execution.objects.filter(workflow__owner=reader)
        .order_by("-created_at")
        .values_list("pk", flat=True)
    )[5]
    return {
        "reader_token": tokens_issue(user=reader)["access"],
        "writer_token": tokens_issue(user=writer)["access"],
        "workflow_id": str(workflow_id),
        "execution_id": str(execution_id),
        "execute_workflow_id": str(target.pk),
        "workflows": str(Workflow.objects.count()),
        "executions": str(Execution.objects.count()),
        "reader_workflows_visible": str(
            Workflow.objects.filter(owner=reader).count()
            + Workflow.objects.filter(is_public=True).exclude(owner=reader).count()
        ),
        "reader_executions": str(Execution.objects.filter(workflow__owner=reader).count()),
    }


# --- Load -------------------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    path: str
    method: str = "GET"
    body: str | None = None
    writer: bool = False


def endpoints(ids: dict[str, str]) -> list[Endpoint]:
    """The endpoints measured, reads first (the writes grow the tables and queue runs)."""
    create_body = {
        "name": "bench create",
        "description": "created under load",
        "graph": {
            "nodes": [
                {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
                {"id": "log", "type": "debug", "params": {"message": "hi"}},
            ],
            "edges": [{"source": "t", "target": "log"}],
        },
        "tags": ["bench", "prod"],
    }
    return [
        Endpoint("workflow list", "/api/workflows"),
        Endpoint("workflow get", f"/api/workflows/{ids['workflow_id']}"),
        Endpoint("execution list", "/api/executions"),
        Endpoint("execution get", f"/api/executions/{ids['execution_id']}"),
        Endpoint("workflow create", "/api/workflows", "POST", json.dumps(create_body), True),
        Endpoint(
            "workflow execute",
            f"/api/workflows/{ids['execute_workflow_id']}/execute",
            "POST",
            json.dumps({"input": {"n": 1}}),
            True,
        ),
    ]


def _check_answers(base_url: str, endpoint: Endpoint, token: str) -> None:
    """One request by hand first: a benchmark of 4xx answers would measure nothing."""
    import requests

    answer = requests.request(
        endpoint.method,
        base_url + endpoint.path,
        data=endpoint.body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    if answer.status_code >= 300:
        raise RuntimeError(f"{endpoint.name}: {answer.status_code} {answer.text[:500]}")


def _wait_worker(worker: Process, env: dict[str, str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.popen.poll() is not None:
            raise RuntimeError(worker.log_path.read_text()[-3000:])
        result = subprocess.run(
            [PYTHON, "-m", "celery", "-A", "autoflow", "inspect", "ping", "--timeout", "2"],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, **env},
            timeout=60,
        )
        if "pong" in result.stdout:
            return
        time.sleep(0.5)
    raise RuntimeError("the worker did not answer a ping")


def _measure(endpoint: Endpoint, url: str, token: str, pids: list[int]) -> list[LoadResult]:
    headers = {"Authorization": f"Bearer {token}"}
    if endpoint.body is not None:
        headers["Content-Type"] = "application/json"
    results = []
    for index in range(RUNS):
        results.append(
            wrk(
                url,
                connections=CONNECTIONS,
                seconds=SECONDS,
                method=endpoint.method,
                body=endpoint.body,
                headers=headers,
                warmup_seconds=2.0 if index == 0 else 1.0,
                cpu_pids=pids,
            )
        )
    return results


def run(base: Baselines) -> list[Figure]:
    env = server_env()
    ensure_database(DATABASE_URL)
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    seeded = subprocess.run(
        [PYTHON, "-m", "bench.api", "seed"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if seeded.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{seeded.stdout[-3000:]}\n{seeded.stderr[-3000:]}")
    ids = json.loads(seeded.stdout.strip().splitlines()[-1])
    print(
        f"api: {ids['workflows']} workflows, {ids['executions']} executions; the reader sees "
        f"{ids['reader_workflows_visible']} workflows and {ids['reader_executions']} executions; "
        f"rate limits {servers.RATE_LIMITS}; web defaults; {RUNS} run(s) x {SECONDS:g} s at "
        f"c={CONNECTIONS}"
    )

    web, base_url = start_daphne("api-daphne", env)
    worker_command = celery_command("autoflow", worker_args(env["WORKER_CONCURRENCY"]))
    worker = start_process("api-worker", worker_command, env)
    figures: list[Figure] = []
    with running(web, worker):
        wait_http(f"{base_url}/health", timeout=60, process=web)
        _wait_worker(worker, env)
        for endpoint in endpoints(ids):
            token = ids["writer_token" if endpoint.writer else "reader_token"]
            _check_answers(base_url, endpoint, token)
            url = base_url + endpoint.path
            loads = _measure(endpoint, url, token, [web.pid])
            errors = sum(load.errors for load in loads)
            p95 = median([load.p95_ms for load in loads])
            rate = median([load.rate for load in loads])
            cpu = median([load.server_cpu_ms_per_request or 0.0 for load in loads])
            c1 = wrk(
                url,
                connections=1,
                seconds=max(5.0, SECONDS / 2),
                method=endpoint.method,
                body=endpoint.body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                },
                warmup_seconds=1.0,
            )
            detail = (
                f"p50 {median([x.p50_ms for x in loads]):.1f} / p99 "
                f"{median([x.p99_ms for x in loads]):.1f} ms at c=16; p50 {c1.p50_ms:.1f} ms "
                f"at c=1; web CPU {cpu:.2f} ms/req; errors {errors}"
            )
            print(f"api: {endpoint.method} {endpoint.path}: {detail}")
            figures.append(
                Figure(
                    name=f"API {endpoint.name} p95, c=16",
                    value=p95,
                    unit="ms",
                    target=P95_TARGET_MS,
                    scaled_target=scale_latency_b1(P95_TARGET_MS, base.b1_rate),
                    higher_is_better=False,
                    runs=[load.p95_ms for load in loads],
                    note=detail,
                )
            )
            figures.append(
                Figure(
                    name=f"API {endpoint.name} req/s, c=16 (vs B1)",
                    value=rate,
                    unit="req/s",
                    runs=[load.rate for load in loads],
                    note=f"{rate / base.b1_rate:.2f} x B1 ({base.b1_rate:.0f} req/s)",
                )
            )
            figures.append(
                Figure(
                    name=f"API {endpoint.name} p50, c=1",
                    value=c1.p50_ms,
                    unit="ms",
                    note=f"B1 p50 at c=1: {base.b1_p50_ms:.2f} ms",
                )
            )
        web_rss = peak_rss_mb(web.pid)
        worker_rss = peak_rss_mb(worker.pid)
    figures.append(Figure(name="peak RSS, web (daphne)", value=web_rss, unit="MiB"))
    figures.append(
        Figure(
            name="peak RSS, worker (prefork -c 5, all processes)",
            value=worker_rss,
            unit="MiB",
        )
    )
    for figure in figures:
        figure.judge()
    return figures


# --- Profiling ----------------------------------------------------------------------------------


def profile(endpoint_name: str, requests_count: int = 200) -> None:
    """Run one endpoint in process under cProfile and print the top functions and queries."""
    import cProfile
    import pstats

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    ids = seed()
    chosen = next(e for e in endpoints(ids) if e.name.replace(" ", "-") == endpoint_name)
    # DEBUG is off, so the client must name a host ALLOWED_HOSTS lists.
    client = APIClient(SERVER_NAME="127.0.0.1")
    token = ids["writer_token" if chosen.writer else "reader_token"]
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    def call() -> Any:
        if chosen.method == "GET":
            return client.get(chosen.path)
        return client.post(chosen.path, data=chosen.body, content_type="application/json")

    for _ in range(10):
        call()
    with CaptureQueriesContext(connection) as captured:
        answer = call()
    print(f"{chosen.method} {chosen.path} -> {answer.status_code}, {len(captured)} queries")
    for query in captured.captured_queries:
        print(f"  {query['time']} s  {query['sql'][:300]}")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for _ in range(requests_count):
        call()
    profiler.disable()
    elapsed = (time.perf_counter() - started) / requests_count * 1000
    print(f"{elapsed:.2f} ms per request in process")
    stats = pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative"))
    stats.print_stats(40)
    if os.environ.get("PROFILE_CALLERS"):
        stats.print_callers(os.environ["PROFILE_CALLERS"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["seed"]:
        print(json.dumps(seed()))
        return 0
    if argv[:1] == ["profile"] and len(argv) == 2:
        ensure_database(DATABASE_URL)
        for name, value in server_env().items():
            os.environ.setdefault(name, value)
        profile(argv[1])
        return 0
    print("usage: python -m bench.api seed | profile <endpoint-name>", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
