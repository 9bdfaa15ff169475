from django.urls import path

from accounts import api

urlpatterns = [
    path("auth/register", api.RegisterView.as_view(), name="auth-register"),
    path("auth/login", api.LoginView.as_view(), name="auth-login"),
    path("auth/refresh", api.RefreshView.as_view(), name="auth-refresh"),
    path("auth/logout", api.LogoutView.as_view(), name="auth-logout"),
    path("auth/me", api.MeView.as_view(), name="auth-me"),
    path("auth/password", api.PasswordView.as_view(), name="auth-password"),
    path("api-keys", api.ApiKeyListView.as_view(), name="api-key-list"),
    path("api-keys/<uuid:api_key_id>", api.ApiKeyDetailView.as_view(), name="api-key-detail"),
]
