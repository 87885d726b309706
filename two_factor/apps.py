from __future__ import annotations

from django.apps import AppConfig


class TwoFactorConfig(AppConfig):
    name = "two_factor"
    verbose_name = "Two-factor verification"

    def ready(self) -> None:
        from two_factor import signals  # noqa: F401 - connects the auth signal receivers
