from django.urls import path

from workflows import api

urlpatterns = [
    path("credentials", api.CredentialListView.as_view(), name="credential-list"),
    path(
        "credentials/<uuid:credential_id>",
        api.CredentialDetailView.as_view(),
        name="credential-detail",
    ),
    path("workflows", api.WorkflowListView.as_view(), name="workflow-list"),
    path("workflows/<uuid:workflow_id>", api.WorkflowDetailView.as_view(), name="workflow-detail"),
    path(
        "workflows/<uuid:workflow_id>/duplicate",
        api.WorkflowDuplicateView.as_view(),
        name="workflow-duplicate",
    ),
    path(
        "workflows/<uuid:workflow_id>/versions",
        api.WorkflowVersionListView.as_view(),
        name="workflow-version-list",
    ),
    path(
        "workflows/<uuid:workflow_id>/versions/<int:version_number>",
        api.WorkflowVersionDetailView.as_view(),
        name="workflow-version-detail",
    ),
    path(
        "workflows/<uuid:workflow_id>/versions/<int:version_number>/restore",
        api.WorkflowVersionRestoreView.as_view(),
        name="workflow-version-restore",
    ),
]
