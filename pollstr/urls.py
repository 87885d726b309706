from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from pollstr import health, metrics

urlpatterns = [
    path("", include("polls.urls")),
    path("accounts/", include("accounts.urls")),
    path("2fa/", include("two_factor.urls")),
    path("admin/", admin.site.urls),
    # Also answered by health.OperatorEndpointsMiddleware, before host validation.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]
