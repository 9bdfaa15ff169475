from django.urls import path

from triggers import api, webhooks

urlpatterns = [
    path("hooks/<str:token>", webhooks.webhook_receive, name="webhook-receive"),
    path(
        "workflows/<uuid:workflow_id>/webhook", api.WebhookInfoView.as_view(), name="webhook-info"
    ),
    path(
        "workflows/<uuid:workflow_id>/webhook/rotate",
        api.WebhookRotateView.as_view(),
        name="webhook-rotate",
    ),
]
