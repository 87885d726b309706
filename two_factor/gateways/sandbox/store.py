"""Where the sandbox keeps Verify's requests and its inbox: JSON values by key, plus
one lock around read-modify-write."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol


class StoreLockTimeout(TimeoutError):
    """Another process held the store's lock for too long."""


class Store(Protocol):
    """JSON-serialisable values by key, plus one lock around read-modify-write."""

    def lock(self) -> AbstractContextManager[object]: ...
    def get(self, key: str) -> Any | None: ...
    def set(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...


class MemoryStore:
    """One process. Values go through JSON so it behaves like a cache-backed store."""

    def __init__(self) -> None:
        self._data: dict[str, str] = {}
        # Re-entrant so a test's callback may inspect the emulator while it emits.
        self._lock = threading.RLock()

    def lock(self) -> AbstractContextManager[object]:
        return self._lock

    def get(self, key: str) -> Any | None:
        with self._lock:
            raw = self._data.get(key)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value: Any) -> None:
        raw = json.dumps(value)
        with self._lock:
            self._data[key] = raw

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)


class CacheStore:
    """Django's cache, shared by every process that shares the cache (Redis in
    production; locmem only within one process).

    The lock is an ``add`` (SET NX on Redis) of a token with a short TTL, so a crashed
    holder cannot wedge the store for longer than ``lock_ttl`` seconds.
    """

    def __init__(
        self,
        alias: str = "default",
        *,
        prefix: str = "sandbox:",
        ttl: int = 24 * 3600,
        lock_timeout: float = 10.0,
        lock_ttl: int = 10,
    ) -> None:
        self.alias = alias
        self.prefix = prefix
        self.ttl = ttl
        self.lock_timeout = lock_timeout
        self.lock_ttl = lock_ttl

    @property
    def cache(self) -> Any:
        from django.core.cache import caches

        return caches[self.alias]

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    @contextmanager
    def lock(self) -> Iterator[None]:
        cache = self.cache
        key = self.key("lock")
        token = uuid.uuid4().hex
        deadline = time.monotonic() + self.lock_timeout
        while not cache.add(key, token, timeout=self.lock_ttl):
            if time.monotonic() > deadline:
                raise StoreLockTimeout(f"could not take {key!r} within {self.lock_timeout}s")
            time.sleep(0.002)
        try:
            yield
        finally:
            # Only release our own lock: if it expired and someone else took it, leave it.
            if cache.get(key) == token:
                cache.delete(key)

    def get(self, key: str) -> Any | None:
        return self.cache.get(self.key(key))

    def set(self, key: str, value: Any) -> None:
        self.cache.set(self.key(key), json.loads(json.dumps(value)), timeout=self.ttl)

    def delete(self, key: str) -> None:
        self.cache.delete(self.key(key))
