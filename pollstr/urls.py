from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from pollstr import errors, health, metrics

urlpatterns = [
    path("", include("polls.urls")),
    path("accounts/", include("accounts.urls")),
    path("2fa/", include("two_factor.urls")),
    path("admin/", admin.site.urls),
    # The language switch posts here (templates/includes/language_switch.html).
    path("i18n/", include("django.conf.urls.i18n")),
    # Also answered by health.OperatorEndpointsMiddleware, before host validation.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
]

# The site's own pages for failed requests (pollstr/errors.py); CSRF: CSRF_FAILURE_VIEW.
handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.page_not_found
handler500 = errors.server_error
