from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("polls.urls")),
    path("accounts/", include("accounts.urls")),
    path("2fa/", include("two_factor.urls")),
    path("admin/", admin.site.urls),
]
