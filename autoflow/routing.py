"""WebSocket routing: every app that serves sockets lists its routes here."""

from __future__ import annotations

from typing import Any

from channels.routing import URLRouter


def websocket_application() -> Any:
    """The `/ws` application (built lazily so importing this module needs no Django setup)."""
    from live.routing import websocket_urlpatterns

    return URLRouter(websocket_urlpatterns)
