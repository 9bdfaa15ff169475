"""`manage.py runplatform`: the whole platform in one process (the embedded default)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = (
        "Migrate, then serve REST, WebSocket, admin and static files with daphne, with a Celery "
        "worker and beat running in the same process."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to bind (8000).")
        parser.add_argument(
            "--no-beat", action="store_true", help="Do not run the scheduler (Celery beat)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=max(0, options["verbosity"] - 1))
        if not settings.WHITENOISE_USE_FINDERS:
            # Production static storage serves only collected, hashed files.
            call_command("collectstatic", interactive=False, verbosity=0)

        # daphne.server installs Twisted's asyncio reactor on import; it must come first.
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from autoflow.asgi import application
        from autoflow.celery import app
        from autoflow.embedded import embedded_start

        services = embedded_start(app=app, with_beat=not options["no_beat"])
        host, port = options["host"], options["port"]
        self.stdout.write(f"AutoFlow is serving on http://{host}:{port} (Ctrl-C stops it)")
        self.stdout.flush()
        try:
            Server(
                application=application,
                endpoints=build_endpoint_description_strings(host=host, port=port),
                signal_handlers=True,
                application_close_timeout=10,
            ).run()
        finally:
            services.stop()
