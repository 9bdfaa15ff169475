"""Django's PostgreSQL backend, with a health check that skips `SELECT 1` on a quiet socket.

(And a query log that names prepared statements too: see `DatabaseOperations`.)

`CONN_HEALTH_CHECKS` sends `SELECT 1` before the first query of every request and, here,
every Celery task: a round trip on every API poll, webhook call and run. A connection the
server ended (a restart, an idle timeout, `pg_terminate_backend`) has something to read on
its socket, the server's error message and then end-of-file. So an idle connection whose
socket has nothing to read is used as it is, and any other gets Django's own check, which
replaces it when it fails. What this cannot see, a peer that vanished without a word (a
cable pulled between hosts), `SELECT 1` would not have caught quickly either: it waits for
TCP to give up.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base, operations
from psycopg.pq import TransactionStatus


def socket_is_quiet(fileno: int) -> bool:
    """True when nothing is waiting to be read on the socket (no message, no end-of-file)."""
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        # psycopg keeps no query text for a prepared statement's execution, where Django's
        # query log (DEBUG, the `django.db.backends` logger) would then show None: show the
        # statement as sent, its parameters numbered ($1, $2, ...) as PostgreSQL numbers them.
        return super().last_executed_query(cursor, sql, params) or sql


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.settings_dict["CONN_HEALTH_CHECKS"]
            and not self.health_check_done  # type: ignore[has-type]  # untyped in the stubs
            and not self.pool
            and self._idle_and_quiet()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _idle_and_quiet(self) -> bool:
        connection = self.connection
        if connection.closed or connection.broken:
            return False
        if connection.info.transaction_status != TransactionStatus.IDLE:
            return False
        try:
            return socket_is_quiet(connection.fileno())
        except (OSError, ValueError):
            return False
