"""B1's server: a bare Django view returning `{}` with no middleware and no database.

Served by one daphne process: `daphne bench.bare_app:application`.
"""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-a-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        LOGGING_CONFIG=None,
    )
    django.setup()


def empty(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("", empty)]

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()
