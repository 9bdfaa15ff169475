"""One thread per process renews the leases of every run the process holds.

A run holds its execution by a lease (`lease_expires_at`) that must be renewed every
`EXECUTION_LEASE_SECONDS / 3`, or the sweeper takes the run over. A thread started and joined
for every run cost a W1 execution ~5 % of its pool child's CPU, for runs that mostly end in
milliseconds, long before their first renewal. One keeper thread per process (started on first
use, again after a fork) now renews whatever runs are registered with it when they are due.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from django.db import connections

logger = logging.getLogger(__name__)


class Renewable(Protocol):
    def heartbeat(self) -> None:
        """Renew the lease (and note a lost one); may raise on a database error."""


class LeaseKeeper:
    """Calls `heartbeat()` on each registered run every `interval` seconds, on one thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: dict[int, tuple[Renewable, float, float]] = {}  # id -> run, interval, at
        self._pid: int | None = None

    @contextmanager
    def holding(self, run: Renewable, interval: float) -> Iterator[None]:
        """Keep `run`'s lease renewed while the block runs."""
        key = id(run)
        with self._changed:
            self._ensure_thread()
            self._due[key] = (run, interval, time.monotonic() + interval)
            self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(key, None)

    def held(self) -> int:
        """How many runs are registered now (for tests and shutdown)."""
        with self._changed:
            return len(self._due)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        # A forked child inherits the registry but not the thread: start afresh.
        self._due.clear()
        self._pid = os.getpid()
        threading.Thread(target=self._keep, name="autoflow-lease", daemon=True).start()

    def _keep(self) -> None:
        while True:
            for run in self._wait_for_due():
                try:
                    run.heartbeat()
                except Exception:  # a database blip: the next round tries again
                    logger.warning("execution heartbeat failed", exc_info=True)
            # Renewals are seconds apart: hold no connection between them.
            connections.close_all()

    def _wait_for_due(self) -> list[Renewable]:
        with self._changed:
            while True:
                now = time.monotonic()
                due = [(k, v) for k, v in self._due.items() if v[2] <= now]
                if due:
                    for key, (run, interval, _) in due:
                        self._due[key] = (run, interval, now + interval)
                    return [run for _, (run, _, _) in due]
                next_at = min((at for _, _, at in self._due.values()), default=None)
                self._changed.wait(None if next_at is None else next_at - now)


keeper = LeaseKeeper()
