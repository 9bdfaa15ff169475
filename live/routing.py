"""`/ws`: one consumer for every live stream; the session is read for the built-in pages."""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from django.urls import path

from live.consumers import LiveConsumer

websocket_urlpatterns: list[Any] = [
    path("ws", AuthMiddlewareStack(LiveConsumer.as_asgi())),
]
