from django.apps import AppConfig


class AutoflowConfig(AppConfig):
    """The project package as an app, so platform-wide commands (`runplatform`) live here."""

    name = "autoflow"
    verbose_name = "AutoFlow platform"
