from __future__ import annotations

from django.urls import path
from django.views.generic import TemplateView

app_name = "two_factor"
urlpatterns = [path("", TemplateView.as_view(template_name="base.html"), name="start")]
