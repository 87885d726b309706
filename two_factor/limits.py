"""The one rate limiter: sliding-window counters on Django's default cache.

Every limit is named in ``settings.TWO_FACTOR_RATE_LIMITS`` as ``name -> (max events,
window seconds)``. Each (name, key) counts events in fixed windows, and the limit looks
at a *sliding* window: the current window's count plus the previous window's, weighted
by how much of it still overlaps the last ``window`` seconds. So there is no burst of
twice the limit at a window boundary, and a limit reopens gradually rather than all at
once on the hour.

One request's limits are decided together and atomically (:func:`limits_hit`): if any is
full, the request is refused and counted only against the limits that refused it (so
hammering a limit keeps it shut, and a refusal by, say, the per-number limit doesn't use
up the person's per-IP allowance); otherwise one event is counted against each. On Redis
that is one Lua script, one round trip whatever the number of limits; the in-process
cache of the embedded default takes a lock instead.

The limiter fails closed: if Redis is down its errors propagate, and
``pollstr.unavailable`` answers 503 ("try again in a moment"); no counter, no code.

Keys are SHA-256 hashed so IP addresses and phone numbers never sit in the cache in
the clear.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext, ngettext
from redis.exceptions import RedisError

__all__ = [
    "RateLimited",
    "limit_check",
    "limit_hit",
    "limits_hit",
    "throttle_check",
    "throttle_hit",
]

# Keep a counter a whole window past its own (it is read as "previous" then), plus slack.
_EXPIRY_SLACK = 60


def _now() -> float:
    # A seam for tests to time-travel with monkeypatch.
    return time.time()


class RateLimited(Exception):
    """Too many events for a limit; ``message`` is safe to show to the person."""

    def __init__(self, *, name: str, retry_after: int) -> None:
        self.name = name
        self.retry_after = max(1, retry_after)
        self.wait = _human_duration(self.retry_after)  # "5 minutes"
        self.message = gettext("Too many attempts. Try again in %(wait)s.") % {"wait": self.wait}
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _human_duration(seconds: int) -> str:
    # Round up: telling someone to come back sooner than they may is worse than later.
    if seconds < 90:
        return ngettext("%(amount)d second", "%(amount)d seconds", seconds) % {"amount": seconds}
    if seconds < 90 * 60:
        minutes = math.ceil(seconds / 60)
        return ngettext("%(amount)d minute", "%(amount)d minutes", minutes) % {"amount": minutes}
    hours = math.ceil(seconds / 3600)
    return ngettext("%(amount)d hour", "%(amount)d hours", hours) % {"amount": hours}


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


@dataclass(frozen=True)
class _Window:
    """Where (name, key) is counted now, and how the previous window still weighs."""

    name: str
    maximum: int
    length: int
    elapsed: float  # seconds into the current window
    cache_key: str  # the current window's counter
    previous_key: str  # the previous window's counter

    @classmethod
    def of(cls, *, name: str, key: str, now: float) -> _Window:
        maximum, length = _limit(name)
        index = int(now // length)
        digest = hashlib.sha256(key.encode()).hexdigest()
        return cls(
            name=name,
            maximum=maximum,
            length=length,
            elapsed=now - index * length,
            cache_key=f"two_factor:limit:{name}:{index}:{digest}",
            previous_key=f"two_factor:limit:{name}:{index - 1}:{digest}",
        )

    @property
    def previous_weight(self) -> float:
        return (self.length - self.elapsed) / self.length

    @property
    def timeout(self) -> int:
        return math.ceil(2 * self.length - self.elapsed) + _EXPIRY_SLACK

    def is_full(self, current: int, previous: int) -> bool:
        return current + previous * self.previous_weight >= self.maximum

    def refusal(self, current: int, previous: int) -> RateLimited:
        return RateLimited(name=self.name, retry_after=self._wait(current, previous))

    def _wait(self, current: int, previous: int) -> int:
        """Seconds until the sliding count drops below the maximum, if nothing is added."""
        room = self.maximum - current
        left = self.length - self.elapsed
        if room > 0 and previous > 0:
            # Within this window, as the previous one slides out.
            return math.ceil(left - room * self.length / previous) + 1
        # Only once this window has become the previous one and slid out far enough.
        return math.ceil(left + self.length * (1 - self.maximum / max(current, 1))) + 1


def _windows(events: list[tuple[str, str]]) -> list[_Window]:
    now = _now()
    return [_Window.of(name=name, key=key, now=now) for name, key in events]


def limits_hit(*, events: list[tuple[str, str]]) -> None:
    """Count one event against each (name, key), or refuse with the longest wait.

    Refused: counted only against the limits that were full. All of it atomic, so
    concurrent requests can't both take a last slot.
    """
    windows = _windows(events)
    if not windows:
        return
    full = _redis_hit(windows) if _redis_client() is not None else _local_hit(windows)
    if full:
        # The refused event was counted too: the wait is for the counts as they are now.
        raise max(
            (windows[i].refusal(current + 1, previous) for i, current, previous in full),
            key=lambda refusal: refusal.retry_after,
        )


def limit_hit(*, name: str, key: str) -> None:
    """Count one event for (name, key); raise RateLimited if the limit is full."""
    limits_hit(events=[(name, key)])


def limit_check(*, name: str, key: str) -> None:
    """Raise RateLimited if (name, key) is full, without counting anything."""
    (window,) = _windows([(name, key)])
    counts = cache.get_many([window.cache_key, window.previous_key])
    current, previous = counts.get(window.cache_key, 0), counts.get(window.previous_key, 0)
    if window.is_full(current, previous):
        raise window.refusal(current, previous)


# --- Redis: one script, one round trip -------------------------------------------------------

# KEYS: current and previous counter of each event. ARGV: per event max, previous
# weight, ttl. Returns the full ones as a flat list {index, current, previous, ...}
# (1-based index) after counting the event against them; else counts every event and
# returns an empty list.
_SCRIPT = """
local full = {}
local n = #KEYS / 2
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  local maximum = tonumber(ARGV[3 * i - 2])
  local weight = tonumber(ARGV[3 * i - 1])
  if current + previous * weight >= maximum then
    table.insert(full, i)
    table.insert(full, current)
    table.insert(full, previous)
  end
end
local targets = {}
if #full > 0 then
  for j = 1, #full, 3 do table.insert(targets, full[j]) end
else
  for i = 1, n do table.insert(targets, i) end
end
for _, i in ipairs(targets) do
  redis.call('INCR', KEYS[2 * i - 1])
  redis.call('EXPIRE', KEYS[2 * i - 1], tonumber(ARGV[3 * i]))
end
return full
"""
_script: Any = None  # redis-py's Script: knows its SHA, reloads itself if Redis forgot it


def _redis_client() -> object | None:
    """The raw redis-py client behind Django's RedisCache, or None for other caches."""
    backend = caches["default"]  # `cache` is a proxy: ask for the backend itself
    if not isinstance(backend, RedisCache):
        return None
    return backend._cache.get_client(None, write=True)


def _redis_hit(windows: list[_Window]) -> list[tuple[int, int, int]]:
    global _script
    client: Any = _redis_client()
    if _script is None:
        _script = client.register_script(_SCRIPT)
    keys: list[str] = []
    args: list[object] = []
    for window in windows:
        keys += [cache.make_key(window.cache_key), cache.make_key(window.previous_key)]
        args += [window.maximum, repr(window.previous_weight), window.timeout]
    flat = _script(keys=keys, args=args, client=client)
    return [(int(flat[j]) - 1, int(flat[j + 1]), int(flat[j + 2])) for j in range(0, len(flat), 3)]


# --- in-process caches (the embedded default, tests) ------------------------------------------

_local_lock = threading.Lock()


def _local_hit(windows: list[_Window], store: Any = None) -> list[tuple[int, int, int]]:
    store = cache if store is None else store
    with _local_lock:
        keys = [k for window in windows for k in (window.cache_key, window.previous_key)]
        counts = store.get_many(keys)
        full = []
        for index, window in enumerate(windows):
            current = counts.get(window.cache_key, 0)
            previous = counts.get(window.previous_key, 0)
            if window.is_full(current, previous):
                full.append((index, current, previous))
        targets = [windows[i] for i, _, _ in full] if full else windows
        for window in targets:
            if not store.add(window.cache_key, 1, timeout=window.timeout):
                store.incr(window.cache_key)
        return full


# --- when Redis cannot be reached: a limit counted in this process ----------------------------

# Sign-in and sign-up must not become an outage with Redis: their throttles fall back to
# counters kept in this process (each web process then allows the limit on its own, a
# weaker but real bound), and go back to Redis as soon as Redis answers.
UNREACHABLE = (RedisError, OSError)
logger = logging.getLogger(__name__)


def throttle_check(*, events: list[tuple[str, str]]) -> None:
    """limit_check() of each event, on this process's counters while Redis is down."""
    for name, key in events:
        try:
            limit_check(name=name, key=key)
        except UNREACHABLE:
            logger.warning("Throttle %s: Redis unreachable, counting in-process", name)
            fallback_limit_check(name=name, key=key)


def throttle_hit(*, events: list[tuple[str, str]]) -> None:
    """limits_hit(), on this process's counters while Redis is down."""
    try:
        limits_hit(events=events)
    except UNREACHABLE:
        logger.warning("Throttle %s: Redis unreachable, counting in-process", events[0][0])
        fallback_limits_hit(events=events)


_fallback = LocMemCache("pollstr-limits-fallback", {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def fallback_limits_hit(*, events: list[tuple[str, str]]) -> None:
    """limits_hit() on this process's own counters."""
    windows = _windows(events)
    full = _local_hit(windows, _fallback)
    if full:
        raise max(
            (windows[i].refusal(current + 1, previous) for i, current, previous in full),
            key=lambda refusal: refusal.retry_after,
        )


def fallback_limit_check(*, name: str, key: str) -> None:
    """limit_check() on this process's own counters."""
    (window,) = _windows([(name, key)])
    counts = _fallback.get_many([window.cache_key, window.previous_key])
    current, previous = counts.get(window.cache_key, 0), counts.get(window.previous_key, 0)
    if window.is_full(current, previous):
        raise window.refusal(current, previous)
