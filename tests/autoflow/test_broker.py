"""The Redis transport reuses one command client per channel and pool, and still works."""

from __future__ import annotations

import os
import uuid
from typing import Any, cast

import pytest
from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from autoflow.broker import Channel, Transport
from autoflow.celery import app

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL"), reason="needs the Redis server (REDIS_URL)"
)


def test_celery_publishes_through_autoflows_transport() -> None:
    assert settings.CELERY_BROKER_TRANSPORT == "autoflow.broker:Transport"
    with app.connection_for_write() as connection:
        assert connection.transport_cls == "autoflow.broker:Transport"
        assert isinstance(connection.default_channel, Channel)


def test_a_channel_reuses_its_command_client_until_its_pool_is_replaced() -> None:
    with Connection(settings.CELERY_BROKER_URL, transport=Transport) as connection:
        channel = cast(Any, connection.channel())
        channel_class = channel.__class__
        assert channel_class is Channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        assert channel.client is not first  # the polling client, pinned to a connection

        channel._disconnect_pools()  # what kombu does in a forked child

        with channel.conn_or_acquire() as after_fork:
            assert after_fork is not first
            assert after_fork.connection_pool is channel.pool


def test_messages_go_through_and_are_acknowledged() -> None:
    name = f"autoflow-test-broker-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, Exchange(name), routing_key=name, auto_delete=True)
    with Connection(settings.CELERY_BROKER_URL, transport=Transport) as connection:
        with connection.Producer() as producer:
            for number in range(3):
                producer.publish(
                    {"n": number}, exchange=queue.exchange, routing_key=name, declare=[queue]
                )
        received: list[int] = []

        def on_message(body: Any, message: Message) -> None:
            received.append(body["n"])
            message.ack()

        with connection.Consumer(queue, accept=["json"]) as consumer:
            consumer.register_callback(on_message)
            while len(received) < 3:
                connection.drain_events(timeout=5)
        assert received == [0, 1, 2]
        channel = cast(Any, connection.default_channel)
        assert channel.client.llen(name) == 0
        assert not channel.client.zcard(channel.unacked_index_key)
        queue(channel).delete()
