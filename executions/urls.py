from django.urls import path

from executions import api

urlpatterns = [
    path(
        "workflows/<uuid:workflow_id>/execute",
        api.WorkflowExecuteView.as_view(),
        name="workflow-execute",
    ),
    path(
        "workflows/<uuid:workflow_id>/stats", api.WorkflowStatsView.as_view(), name="workflow-stats"
    ),
    path("executions", api.ExecutionListView.as_view(), name="execution-list"),
    path(
        "executions/<uuid:execution_id>", api.ExecutionDetailView.as_view(), name="execution-detail"
    ),
    path(
        "executions/<uuid:execution_id>/logs",
        api.ExecutionLogsView.as_view(),
        name="execution-logs",
    ),
    path(
        "executions/<uuid:execution_id>/retry",
        api.ExecutionRetryView.as_view(),
        name="execution-retry",
    ),
    path(
        "executions/<uuid:execution_id>/cancel",
        api.ExecutionCancelView.as_view(),
        name="execution-cancel",
    ),
]
