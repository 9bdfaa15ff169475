"""ASGI entry point: `daphne autoflow.asgi:application` (HTTP and WebSocket)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
django.setup(set_prefix=False)  # as get_asgi_application() does

from channels.routing import ProtocolTypeRouter  # noqa: E402 - needs Django set up first
from django.conf import settings  # noqa: E402

from autoflow import daphne_requests  # noqa: E402
from autoflow.body_limit import BodySizeLimit  # noqa: E402
from autoflow.gc_tuning import tune_for_serving  # noqa: E402
from autoflow.handlers import ASGIHandler  # noqa: E402
from autoflow.request_threads import OnRequestThreads, RequestThreads  # noqa: E402
from autoflow.routing import websocket_application  # noqa: E402

daphne_requests.install()
request_threads = RequestThreads(settings.WEB_REQUEST_THREADS)
application = BodySizeLimit(
    ProtocolTypeRouter(
        {
            "http": OnRequestThreads(ASGIHandler(), request_threads),
            "websocket": OnRequestThreads(websocket_application(), request_threads),
        }
    ),
    max_bytes=settings.MAX_REQUEST_BYTES,
)
tune_for_serving()  # last: what start-up built is frozen
