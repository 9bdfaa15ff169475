"""The embedded platform's background parts: a Celery worker and beat in threads.

`manage.py runplatform` runs them beside daphne in one process. The worker is a real one: tasks
are published to the broker (kombu's in-memory transport in the embedded default, Redis when
`REDIS_URL` is set) and consumed here, so delays, retries and cancellation behave as in
production. The pattern follows `celery/contrib/testing/worker.py`.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog
from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController, state
from django.conf import settings

from autoflow.workers import heartbeat_start, heartbeat_stop

logger = structlog.get_logger(__name__)
STARTUP_TIMEOUT_SECONDS = 30.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


class ThreadedWorkController(WorkController):
    """A worker that signals once its consumer is ready to take tasks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: object) -> None:
        self.ready.set()


@dataclass
class EmbeddedServices:
    """The running worker and beat, and how to stop them."""

    worker: ThreadedWorkController
    worker_thread: threading.Thread
    beat: Any = None
    stopped: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        """Stop beat, then let the worker finish what it holds (bounded)."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        heartbeat_stop()
        if self.beat is not None:
            self.beat.stop()
        # The consumer loop checks this flag between polls and shuts down warmly.
        state.should_stop = 0  # type: ignore[assignment]
        self.worker_thread.join(SHUTDOWN_TIMEOUT_SECONDS)
        state.should_stop = None
        if self.worker_thread.is_alive():
            logger.warning("embedded worker did not stop in time; leaving it to process exit")


def embedded_start(*, app: Celery, with_beat: bool = True) -> EmbeddedServices:
    """Start a Celery worker (threads pool) and, optionally, beat in daemon threads."""
    app.finalize()
    app.set_current()
    app.set_default()
    hostname = f"embedded@{socket.gethostname()}"
    worker = ThreadedWorkController(
        app=app,
        hostname=hostname,
        pool="threads",
        concurrency=settings.WORKER_CONCURRENCY,
        # One process: there are no peers to exchange heartbeats, mingle or gossip with.
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        ready_callback=None,
    )
    worker_thread = threading.Thread(target=worker.start, name="autoflow-worker", daemon=True)
    worker_thread.start()
    if not worker.ready.wait(STARTUP_TIMEOUT_SECONDS):
        raise RuntimeError("the embedded Celery worker did not start within 30 s")
    heartbeat_start(hostname)
    beat: Any = None
    if with_beat:
        beat = EmbeddedService(app, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER)
        beat.start()
    logger.info(
        "embedded worker started",
        hostname=hostname,
        concurrency=settings.WORKER_CONCURRENCY,
        broker="redis" if settings.REDIS_URL else "memory",
        beat=with_beat,
    )
    return EmbeddedServices(worker=worker, worker_thread=worker_thread, beat=beat)
