"""Refusals: what a voter asked for that we won't do, and the rate limits that say so."""

from __future__ import annotations

from two_factor.limits import RateLimited, limits_hit


class VerificationRefused(Exception):
    """Something the person asked for that we won't do; the message tells them why."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AlreadyCompleted(VerificationRefused):
    """The verification was consumed meanwhile (another tab, a double click)."""


class MalformedCode(VerificationRefused):
    """What was typed cannot be a code (too short, letters): the typing is to fix, and
    nothing was counted against the voter."""


def _limit(events: list[tuple[str, str]]) -> None:
    try:
        limits_hit(events=events)
    except RateLimited as limited:
        from two_factor.signals import rate_limit_refused

        rate_limit_refused.send_robust(
            sender=RateLimited, name=limited.name, retry_after=limited.retry_after
        )
        raise VerificationRefused(limited.message, retry_after=limited.retry_after) from None
