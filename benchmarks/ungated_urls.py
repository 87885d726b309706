"""The project's URLs, but /polls/<id>/ served by the same view undecorated: login still
required (the session and user load as on the gated page), no verified-session check."""

from __future__ import annotations

import inspect

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.decorators.http import require_GET

from polls import views

ungated_detail = require_GET(login_required(inspect.unwrap(views.detail)))

urlpatterns = [
    path("polls/<int:question_id>/", ungated_detail, name="ungated-detail"),
    path("", include("pollstr.urls")),
]
