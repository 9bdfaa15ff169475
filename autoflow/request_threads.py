"""Each request's and each socket's sync code on one of a few long-lived threads.

Django runs a request's sync code (sync views, signal receivers, the ORM behind async views)
in a thread of the request's own, started for it and ended with it, so a database connection
can never outlive the request: every request paid for a new PostgreSQL connection, which cost
PostgreSQL more CPU than the request's queries. A WebSocket consumer's database calls
(`database_sync_to_async`) fared no better: they ran on asgiref's one process-wide thread,
which closed its connection after every call. Here a request, or a socket for its whole life,
borrows the least busy of `WEB_REQUEST_THREADS` long-lived threads (asgiref's
`ThreadSensitiveContext` with an executor the caller owns), and the threads keep their
connections (`autoflow.kept_connections`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any

from asgiref.sync import ThreadSensitiveContext

from autoflow.kept_connections import keep_connections_in_this_thread


class RequestThreads:
    """A fixed set of single-thread executors; each request takes the least busy one."""

    current: ContextVar[RequestThreads | None] = ContextVar("request_threads", default=None)

    def __init__(self, count: int) -> None:
        self._executors = [
            ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=f"autoflow-request-{index}",
                initializer=keep_connections_in_this_thread,
            )
            for index in range(count)
        ]
        # Requests per executor, counted on the event loop's thread only.
        self._requests = [0] * count

    @contextlib.asynccontextmanager
    async def context(self) -> AsyncIterator[None]:
        """Route the thread-sensitive calls made inside to one executor's thread."""
        index = min(range(len(self._requests)), key=self._requests.__getitem__)
        self._requests[index] += 1
        # Work the request starts beyond its own life (a shared batch) borrows from the same set.
        current = RequestThreads.current.set(self)
        try:
            async with ThreadSensitiveContext(executor=self._executors[index]):
                yield
        finally:
            RequestThreads.current.reset(current)
            self._requests[index] -= 1


class OnRequestThreads:
    """Wrap an ASGI application: each request, or each socket, runs its sync code on `threads`.

    Django's `ASGIHandler` opens a `ThreadSensitiveContext` of its own for each request; inside
    this one, which names an executor, that context changes nothing (asgiref lets only the
    outermost context choose the thread).
    """

    def __init__(self, app: Any, threads: RequestThreads) -> None:
        self.app = app
        self.threads = threads

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with self.threads.context():
            await self.app(scope, receive, send)
