"""A clock the tests move by hand instead of sleeping or editing rows into the past."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest


class FakeClock:
    """Frozen wall-clock time; `advance` moves it forward.

    Call it for the epoch seconds, so it can be handed to anything that takes a clock
    (the sandbox gateway and its emulator). `install` also puts it behind every clock
    the app reads on its own: `django.utils.timezone.now` (deadlines, cooldowns), the
    rate limiter's `_now` and the verified-session flag's `time.time`. Rows keep the
    real time they were created at (`default=timezone.now` was bound at import), so a
    clock started at the real present stays consistent with them.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def travel_to(self, moment: float) -> None:
        self.now = moment

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
        import django.utils.timezone

        from two_factor import limits, session

        monkeypatch.setattr(django.utils.timezone, "now", self.datetime)
        monkeypatch.setattr(limits, "_now", self)
        # Only the session module's view of `time`: pytest's own timers keep the real one.
        monkeypatch.setattr(session, "time", SimpleNamespace(time=self))
        return self
