"""The one rate limiter: fixed-window counters on Django's default cache.

Every limit is named in ``settings.TWO_FACTOR_RATE_LIMITS`` as ``name -> (max events,
window seconds)``. A counter lives under a key that includes the window's index, so a
new window starts from zero without anyone resetting anything, and the old counter
simply expires.

Counting is ``cache.add(key, 0)`` followed by ``cache.incr(key)``: ``add`` only creates
the key when it is missing and ``incr`` is atomic on both backends we run (Redis in
production, locmem in the embedded default), so concurrent requests can't both take
the last slot. A refused event still counts, so hammering a limit keeps it shut.

Keys are SHA-256 hashed so IP addresses and phone numbers never sit in the cache in
the clear.

When the cache cannot be reached, its error (redis-py's ConnectionError or TimeoutError,
quick thanks to the cache's socket timeouts) propagates on purpose: the limiter fails
closed, since an action it cannot count could be an SMS pumping run, and
``pollstr.unavailable`` answers the person 503 "try again in a moment".
"""

from __future__ import annotations

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

__all__ = ["RateLimited", "limit_check", "limit_hit", "limit_reset", "limits_hit"]

# Keep a counter a little past its window's end, so it can't expire between the
# ``add`` and the ``incr`` of an event that arrives at the very end of the window.
_EXPIRY_SLACK = 60


def _now() -> float:
    # A seam for tests to time-travel with monkeypatch.
    return time.time()


class RateLimited(Exception):
    """Too many events for a limit; ``message`` is safe to show to the person."""

    def __init__(self, *, name: str, retry_after: int) -> None:
        self.name = name
        self.retry_after = max(1, retry_after)
        self.message = f"Too many attempts. Try again in {_human_duration(self.retry_after)}."
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _human_duration(seconds: int) -> str:
    # Round up: telling someone to come back sooner than they may is worse than later.
    if seconds < 90:
        amount, unit = seconds, "second"
    elif seconds < 90 * 60:
        amount, unit = math.ceil(seconds / 60), "minute"
    else:
        amount, unit = math.ceil(seconds / 3600), "hour"
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def _limit(name: str) -> tuple[int, int]:
    limits = settings.TWO_FACTOR_RATE_LIMITS
    if name not in limits:
        raise ImproperlyConfigured(
            f"Unknown rate limit {name!r}: add it to TWO_FACTOR_RATE_LIMITS."
        )
    try:
        maximum, window = limits[name]
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_RATE_LIMITS[{name!r}] must be (max events, window seconds)."
        ) from None
    if not (isinstance(maximum, int) and isinstance(window, int) and maximum >= 1 and window >= 1):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_RATE_LIMITS[{name!r}] must be two positive integers, got {limits[name]!r}."
        )
    return maximum, window


class _Window:
    """Where (name, key) is counted right now, and how long until that window ends."""

    def __init__(self, *, name: str, key: str) -> None:
        self.name = name
        self.maximum, length = _limit(name)
        now = _now()
        index = int(now // length)
        self.retry_after = math.ceil((index + 1) * length - now)
        self.timeout = self.retry_after + _EXPIRY_SLACK
        digest = hashlib.sha256(key.encode()).hexdigest()
        self.cache_key = f"two_factor:limit:{name}:{index}:{digest}"

    def refusal(self) -> RateLimited:
        return RateLimited(name=self.name, retry_after=self.retry_after)


def limit_hit(*, name: str, key: str) -> None:
    """Count one event for (name, key); raise RateLimited if it goes over the max."""
    window = _Window(name=name, key=key)
    cache.add(window.cache_key, 0, timeout=window.timeout)
    try:
        count = cache.incr(window.cache_key)
    except ValueError:
        # The counter vanished between add and incr (evicted, or flushed): start it again.
        cache.add(window.cache_key, 0, timeout=window.timeout)
        count = cache.incr(window.cache_key)
    if count > window.maximum:
        raise window.refusal()


def limit_check(*, name: str, key: str) -> None:
    """Raise RateLimited if (name, key) has no events left, without counting one."""
    window = _Window(name=name, key=key)
    if cache.get(window.cache_key, 0) >= window.maximum:
        raise window.refusal()


def limit_reset(*, name: str, key: str) -> None:
    """Forget the current window's events for (name, key), e.g. after a success."""
    cache.delete(_Window(name=name, key=key).cache_key)


def limits_hit(*, events: list[tuple[str, str]]) -> None:
    """Count one event against each (name, key), or none if any limit is already full.

    Checking every limit before counting any means a refusal by, say, the per-number
    limit doesn't also use up the person's per-IP allowance. If several limits are
    full, the refusal carries the longest wait, since all of them must clear.
    """
    refusals: list[RateLimited] = []
    for name, key in events:
        try:
            limit_check(name=name, key=key)
        except RateLimited as exc:
            refusals.append(exc)
    if refusals:
        raise max(refusals, key=lambda exc: exc.retry_after)
    # A concurrent request can still take a last slot between the check and the count;
    # limit_hit then refuses, which is the safe side.
    for name, key in events:
        limit_hit(name=name, key=key)
