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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import ThreadSensitiveContext
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries

from autoflow.kept_connections import keep_connections_in_this_thread

P = ParamSpec("P")
T = TypeVar("T")

# Django's own `request_started` receivers. Sync receivers cost an ASGI request a thread hop of
# their own (`Signal.asend`): one of four for an API request, with the view's, the DRF
# response's `render()` and its `close()`. Under `OnRequestThreads` they run at the start of
# the request's first hop instead, on the same thread, before anything there touches the
# database.
REQUEST_STARTED_RECEIVERS: tuple[Callable[..., None], ...] = (reset_queries, close_old_connections)


def _request_started() -> None:
    for receiver in REQUEST_STARTED_RECEIVERS:
        receiver()


class _StartedFirst(Executor):
    """A request's door to its thread: the first call runs Django's `request_started` work."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._started = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._started:
            return self._executor.submit(fn, *args, **kwargs)
        self._started = True

        def started_then_called() -> T:
            _request_started()
            return fn(*args, **kwargs)

        return self._executor.submit(started_then_called)


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
    async def context(self, *, http: bool = False) -> AsyncIterator[None]:
        """Route the thread-sensitive calls made inside to one executor's thread.

        For an HTTP request (`http`), the first call runs `REQUEST_STARTED_RECEIVERS` first.
        """
        index = min(range(len(self._requests)), key=self._requests.__getitem__)
        self._requests[index] += 1
        executor: Executor = self._executors[index]
        if http:
            executor = _StartedFirst(executor)
        # Work the request starts beyond its own life (a shared batch) borrows from the same set.
        current = RequestThreads.current.set(self)
        try:
            async with ThreadSensitiveContext(executor=executor):
                yield
        finally:
            RequestThreads.current.reset(current)
            self._requests[index] -= 1


class OnRequestThreads:
    """Wrap an ASGI application: each request, or each socket, runs its sync code on `threads`.

    Django's `ASGIHandler` opens a `ThreadSensitiveContext` of its own for each request; inside
    this one, which names an executor, that context changes nothing (asgiref lets only the
    outermost context choose the thread). Building one disconnects Django's `request_started`
    receivers, which each HTTP request's first call on its thread runs instead.
    """

    def __init__(self, app: Any, threads: RequestThreads) -> None:
        self.app = app
        self.threads = threads
        for receiver in REQUEST_STARTED_RECEIVERS:
            request_started.disconnect(receiver)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with self.threads.context(http=scope["type"] == "http"):
            await self.app(scope, receive, send)
