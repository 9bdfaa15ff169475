from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"

    def ready(self) -> None:
        # Register the built-in types before the first request, not lazily inside one.
        import nodes.builtin  # noqa: F401
