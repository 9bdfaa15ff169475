"""kombu's Redis transport, with one Redis client object per channel for its plain commands.

kombu's Redis channel builds a new `redis.Redis` for every publish, acknowledgement and queue
operation (`Channel.conn_or_acquire`), and redis-py's constructor copies its table of response
callbacks each time: about 4 % of the worker's CPU and 2 % of the web process's under load
(py-spy). Such a client holds no connection of its own; it borrows one from the channel's
pool per command, so one object serves every call for as long as the channel keeps that pool
(kombu replaces the pools after a fork). The client the channel polls with (`Channel.client`,
which kombu pins to one connection) is kombu's own, unchanged.

Used when the broker is Redis: `CELERY_BROKER_TRANSPORT = "autoflow.broker:Transport"`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """A Redis channel that reuses its client for commands sent on pooled connections."""

    _plain_client: tuple[Any, Any] | None = None  # (the pool it borrows from, the client)

    def _create_client(self, asynchronous: bool = False) -> Any:
        # kombu's stubs do not declare this private method; it is what `conn_or_acquire` calls.
        create = super()._create_client  # type: ignore[misc]
        if asynchronous:
            return create(asynchronous=True)
        pool = self.pool
        if self._plain_client is None or self._plain_client[0] is not pool:
            self._plain_client = (pool, create())
        return self._plain_client[1]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` above."""

    Channel = Channel
