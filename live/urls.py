from django.urls import path

from live import views

app_name = "live"

urlpatterns = [
    path(
        "executions/<uuid:execution_id>/live",
        views.execution_live_page,
        name="execution-live",
    ),
    path(
        "executions/<uuid:execution_id>/live/state",
        views.execution_live_state_view,
        name="execution-live-state",
    ),
]
