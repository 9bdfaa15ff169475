"""WSGI entry point (management and tests; production serves ASGI through daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoflow.settings")
application = get_wsgi_application()
