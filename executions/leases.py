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
# With nothing to renew the keeper still wakes this often, so a run registered meanwhile (due
# an interval later, never under half a second) needs no wake-up call of its own.
IDLE_WAKE_SECONDS = 0.5


class Renewable(Protocol):
    def heartbeat(self) -> None:
        """Renew the lease (and note a lost one); may raise on a database error."""


class LeaseKeeper:
    """Calls `heartbeat()` on each registered run every `interval` seconds, on one thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: dict[int, tuple[Renewable, float, float]] = {}  # id -> run, interval, at
        self._pid: int | None = None
        self._wakes_at = 0.0

    @contextmanager
    def holding(self, run: Renewable, interval: float) -> Iterator[None]:
        """Keep `run`'s lease renewed while the block runs."""
        key = id(run)
        with self._changed:
            self._ensure_thread()
            due = time.monotonic() + interval
            self._due[key] = (run, interval, due)
            if due < self._wakes_at:  # else the keeper wakes in time anyway: no thread switch
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(key, None)

    def held(self) -> int:
        """How many runs are registered now."""
        with self._changed:
            return len(self._due)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        # A forked child inherits the registry but not the thread: start afresh.
        self._due.clear()
        self._pid = os.getpid()
        self._wakes_at = 0.0
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
                self._wakes_at = min(
                    (at for _, _, at in self._due.values()), default=now + IDLE_WAKE_SECONDS
                )
                self._changed.wait(self._wakes_at - now)


keeper = LeaseKeeper()
