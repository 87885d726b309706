"""The Celery app. Tasks live in the `tasks` package and call two_factor's services."""

from __future__ import annotations

import os

from celery import Celery

from pollstr import kombu_fixes

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pollstr.settings")

# Before any broker connection: a Redis restart must not end the worker.
kombu_fixes.apply()

app = Celery("pollstr")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Tasks live in the `tasks` package, listed in settings.CELERY_IMPORTS.
