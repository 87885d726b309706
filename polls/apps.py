from __future__ import annotations

from django.apps import AppConfig


class PollsConfig(AppConfig):
    name = "polls"
    verbose_name = "Polls"

    def ready(self) -> None:
        from polls import ballots, checks  # noqa: F401 - connect the receivers, register the checks
