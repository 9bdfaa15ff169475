"""ASGI entry point: `daphne autoflow.asgi:application` (HTTP and WebSocket)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
django.setup(set_prefix=False)  # as get_asgi_application() does

from channels.routing import ProtocolTypeRouter  # noqa: E402 - needs Django set up first
from django.conf import settings  # noqa: E402

from autoflow.body_limit import BodySizeLimit  # noqa: E402
from autoflow.request_threads import (  # noqa: E402
    RequestThreads,
    SharedThreadsASGIHandler,
    SharedThreadsWebSocket,
)
from autoflow.routing import websocket_application  # noqa: E402

request_threads = RequestThreads(settings.WEB_REQUEST_THREADS)
django_application = SharedThreadsASGIHandler(request_threads)
application = BodySizeLimit(
    ProtocolTypeRouter(
        {
            "http": django_application,
            "websocket": SharedThreadsWebSocket(websocket_application(), request_threads),
        }
    ),
    max_bytes=settings.MAX_REQUEST_BYTES,
)
