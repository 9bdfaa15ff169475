from django.apps import AppConfig


class TriggersConfig(AppConfig):
    name = "triggers"

    def ready(self) -> None:
        from triggers.services import workflow_triggers_sync
        from workflows.services import workflow_change_listeners

        if workflow_triggers_sync not in workflow_change_listeners:
            workflow_change_listeners.append(workflow_triggers_sync)
