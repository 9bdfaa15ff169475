from django.apps import AppConfig


class LiveConfig(AppConfig):
    """Live streams over `/ws` and the live execution page."""

    name = "live"
