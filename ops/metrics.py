"""Prometheus metrics: per-view request counters in this process, run figures from the database.

Request counters live in the web process that served the request (each process is scraped on
its own). Execution and node-run figures are read from the tables at scrape time, so they are
right whichever worker process did the work and survive restarts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.db import connection
from django.db.models import Count, F, Min, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autoflow.middleware import AsyncCapableMiddleware, GetResponse
from executions.models import Execution, ExecutionStatus, NodeRun

logger = logging.getLogger(__name__)

# No auto-describe: describing would run the database queries at import time.
REGISTRY = CollectorRegistry()

REQUESTS = Counter(
    "autoflow_http_requests",
    "HTTP requests answered, by view, method and status code.",
    ["view", "method", "status"],
    registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "autoflow_http_request_duration_seconds",
    "Time to answer an HTTP request, by view.",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def _view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        # Unrouted paths share one label so a scanner cannot grow the label set without bound.
        return "<unresolved>"
    return str(match.view_name or match._func_path)


class RequestMetricsMiddleware(AsyncCapableMiddleware):
    """Count and time every request by the view that served it (sync or async chain)."""

    def _observe(self, request: HttpRequest, response: HttpResponse, started: float) -> None:
        view = _view_label(request)
        REQUESTS.labels(
            view=view, method=request.method or "", status=str(response.status_code)
        ).inc()
        REQUEST_LATENCY.labels(view=view).observe(time.perf_counter() - started)

    def handle(self, request: HttpRequest, get_response: GetResponse) -> HttpResponse:
        started = time.perf_counter()
        response: HttpResponse = get_response(request)
        self._observe(request, response, started)
        return response

    async def ahandle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response: HttpResponse = await self.get_response(request)
        self._observe(request, response, started)
        return response


def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class DatabaseCollector(Collector):
    """Figures read from the database (and the queue) at scrape time, a few indexed queries."""

    def collect(self) -> Iterator[Metric]:
        up = _gauge("autoflow_metrics_database_up", "1 when the database figures could be read.")
        try:
            yield from self._database_metrics()
            up.add_metric([], 1)
        except Exception:  # a scrape must answer even while the database is down
            logger.warning("metrics: database figures unavailable", exc_info=True)
            up.add_metric([], 0)
        yield up
        yield from self._queue_metrics()

    def _database_metrics(self) -> Iterator[Metric]:
        now = timezone.now()
        by_status = dict.fromkeys(ExecutionStatus.values, 0)
        for row in Execution.objects.order_by().values("status").annotate(n=Count("pk")):
            by_status[row["status"]] = row["n"]
        executions = _gauge(
            "autoflow_executions",
            "Executions stored, by status (started = all rows; finished = terminal statuses).",
            ["status"],
        )
        for status, count in sorted(by_status.items()):
            executions.add_metric([status], count)
        yield executions
        running = _gauge("autoflow_executions_running", "Executions running right now.")
        running.add_metric([], by_status[ExecutionStatus.RUNNING])
        yield running

        # Both read the partial index on running executions' lease expiry.
        running_rows = Execution.objects.filter(status=ExecutionStatus.RUNNING).order_by()
        figures = running_rows.aggregate(
            oldest=Min("started_at"), stale=Count("pk", filter=Q(lease_expires_at__lt=now))
        )
        oldest = _gauge(
            "autoflow_oldest_running_execution_age_seconds",
            "Age of the longest-running execution (0 when none runs).",
        )
        oldest_started = figures["oldest"]
        oldest.add_metric([], (now - oldest_started).total_seconds() if oldest_started else 0.0)
        yield oldest
        stale = _gauge(
            "autoflow_executions_stale_heartbeat",
            "Running executions whose worker lease lapsed (worker gone or stuck).",
        )
        stale.add_metric([], figures["stale"] or 0)
        yield stale

        node_runs = _gauge(
            "autoflow_node_runs", "Node runs stored, by node type and outcome.", ["type", "status"]
        )
        for row in NodeRun.objects.order_by().values("type", "status").annotate(n=Count("pk")):
            node_runs.add_metric([row["type"], row["status"]], row["n"])
        yield node_runs

        retries = _gauge(
            "autoflow_retries",
            "Retries stored: node attempts past the first, retry executions, worker recoveries.",
            ["kind"],
        )
        node_retries = NodeRun.objects.filter(attempts__gt=1).aggregate(n=Sum(F("attempts") - 1))[
            "n"
        ]
        execution_figures = Execution.objects.order_by().aggregate(
            retried=Count("pk", filter=Q(trigger="retry")), recovered=Sum("recovery_count")
        )
        retries.add_metric(["node_attempt"], node_retries or 0)
        retries.add_metric(["execution"], execution_figures["retried"] or 0)
        retries.add_metric(["recovery"], execution_figures["recovered"] or 0)
        yield retries

    def _queue_metrics(self) -> Iterator[Metric]:
        from autoflow.health import queue_depth
        from autoflow.workers import live_worker_count

        depth = _gauge("autoflow_queue_depth", "Jobs waiting in the Celery queue (-1: unreadable).")
        workers = _gauge("autoflow_workers_live", "Workers that sent a heartbeat in the last 30 s.")
        try:
            depth.add_metric([], queue_depth() or 0)
        except Exception:  # Redis down: say so with a sentinel rather than fail the scrape
            depth.add_metric([], -1)
        try:
            workers.add_metric([], live_worker_count())
        except Exception:
            workers.add_metric([], -1)
        yield depth
        yield workers


REGISTRY.register(DatabaseCollector())


def metrics_text() -> bytes:
    """Render every metric in the Prometheus text format."""
    try:
        return generate_latest(REGISTRY)
    finally:
        # A scrape runs in a request thread; don't keep its connection past the scrape.
        if connection.in_atomic_block is False:
            connection.close_if_unusable_or_obsolete()


def metrics_content_type() -> str:
    from prometheus_client import CONTENT_TYPE_LATEST

    return str(CONTENT_TYPE_LATEST)
