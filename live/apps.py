from django.apps import AppConfig


class LiveConfig(AppConfig):
    """Live streams over `/ws` and the live execution page."""

    name = "live"

    def ready(self) -> None:
        from live.publish import workflow_change_publish
        from workflows.services import workflow_change_listeners

        if workflow_change_publish not in workflow_change_listeners:
            workflow_change_listeners.append(workflow_change_publish)
