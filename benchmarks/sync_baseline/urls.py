from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from benchmarks.sync_baseline import views

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="baseline/login.html"),
        name="login",
    ),
    path("2fa/number/", views.number, name="number"),
    path("2fa/code/", views.code, name="code"),
    path("polls/<int:question_id>/", views.PollDetail.as_view(), name="detail"),
    path("healthz", views.healthz, name="healthz"),
]
