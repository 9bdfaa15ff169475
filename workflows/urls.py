from django.urls import path

from workflows import api

urlpatterns = [
    path("credentials", api.CredentialListView.as_view(), name="credential-list"),
    path(
        "credentials/<uuid:credential_id>",
        api.CredentialDetailView.as_view(),
        name="credential-detail",
    ),
]
