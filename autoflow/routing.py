"""WebSocket routing: every app that serves sockets lists its routes here."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter


def websocket_application() -> Any:
    """The `/ws` application (built lazily so importing this module needs no Django setup)."""
    urlpatterns: list[Any] = []
    try:
        from executions.routing import websocket_urlpatterns
    except ImportError:
        websocket_urlpatterns = []
    urlpatterns.extend(websocket_urlpatterns)
    return URLRouter(urlpatterns)
