"""Webhook calls written in batches, off the answer's path.

Every webhook call leaves a row: what it answered, for `GET /api/workflows/{id}/webhook`'s
`last_calls` (the "why 404?" trail). Written as each call was answered, every row was a
statement and a commit of its own, and a waiting call took a thread hop after its answer was
known just to write it: a quarter of PostgreSQL's commits per W1 execution. Here calls wait in
memory and one thread per process writes what has gathered, in one statement, at most
`FLUSH_SECONDS` after the first of them (and at exit). A process killed outright loses at
most that much of its trail; executions are written elsewhere and never wait here.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid

from django.db import DatabaseError, IntegrityError, close_old_connections, connections

from autoflow.kept_connections import keep_connections_in_this_thread
from autoflow.statements import insert_objects
from workflows.models import WebhookCall, Workflow

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
# Held while the database cannot take them; past this many the newest are dropped (logged).
MAX_PENDING = 10_000


class CallLog:
    """Webhook calls waiting to be written, and the thread that writes them."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS, max_pending: int = MAX_PENDING):
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: list[WebhookCall] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        self._writer: threading.Thread | None = None

    def add(
        self, *, workflow_id: uuid.UUID, method: str, status: int, execution_id: uuid.UUID | None
    ) -> None:
        """Queue one call's record; any thread, the event loop's included (no I/O here)."""
        call = WebhookCall(
            workflow_id=workflow_id, method=method[:10], status=status, execution_id=execution_id
        )
        with self._lock:
            if len(self._pending) >= self.max_pending:
                logger.warning("webhook call log full: a call to %s went unrecorded", workflow_id)
                return
            self._pending.append(call)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_forever, name="webhook-call-log", daemon=True
                )
                self._writer.start()
        self._arrived.set()

    def flush(self) -> int:
        """Write every queued call now, in one statement; how many were written."""
        with self._lock:
            calls, self._pending = self._pending, []
        if not calls:
            return 0
        try:
            return _write(calls)
        except DatabaseError:
            logger.warning("webhook call log: %d calls kept for the next try", len(calls))
            with self._lock:
                room = max(self.max_pending - len(self._pending), 0)
                self._pending[:0] = calls[:room]
            raise

    def _write_forever(self) -> None:
        keep_connections_in_this_thread()
        while True:
            self._arrived.wait()
            time.sleep(self.flush_seconds)  # what arrives meanwhile joins the same statement
            self._arrived.clear()
            close_old_connections()
            try:
                self.flush()
            except DatabaseError:
                pass  # logged by flush(); the calls stay queued for the next round
            except Exception:  # the writer must outlive any one batch
                logger.exception("webhook call log: a batch of calls was lost")
            with self._lock:
                idle = not self._pending
                if not idle:
                    self._arrived.set()
            if idle:
                # A quiet log holds no session: the next call may be hours away.
                connections.close_all()


def _write(calls: list[WebhookCall]) -> int:
    try:
        insert_objects(calls)
        return len(calls)
    except IntegrityError:
        # A workflow deleted since its call: its calls (and trail) go with it.
        ids = {call.workflow_id for call in calls}
        live = set(Workflow.objects.filter(pk__in=ids).values_list("pk", flat=True))
        kept = [call for call in calls if call.workflow_id in live]
        insert_objects(kept)
        return len(kept)


call_log = CallLog()


@atexit.register
def _flush_at_exit() -> None:
    try:
        call_log.flush()
    except Exception:  # the process is ending: say so, never raise from here
        logger.exception("webhook call log: calls lost at exit")
