from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from orderhub.health import health, live
from orderhub.metrics import metrics

handler404 = "orderhub.api.errors.not_found"
handler500 = "orderhub.api.errors.server_error"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("orderhub.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"), name="redoc"),
    path("health/", health, name="health"),
    path("health/ready/", health, name="health-ready"),
    path("health/live/", live, name="health-live"),
    path("metrics", metrics, name="metrics"),
]
