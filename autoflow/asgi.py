"""ASGI entry point: `daphne autoflow.asgi:application` (HTTP and WebSocket)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402 - needs Django set up first
from django.conf import settings  # noqa: E402

from autoflow.body_limit import BodySizeLimit  # noqa: E402
from autoflow.routing import websocket_application  # noqa: E402

application = BodySizeLimit(
    ProtocolTypeRouter({"http": django_application, "websocket": websocket_application()}),
    max_bytes=settings.MAX_REQUEST_BYTES,
)
