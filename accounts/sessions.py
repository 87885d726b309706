"""The session store: database sessions read through the cache, looking up only keys it
could have issued.

Every request reads its session; few write it. Reads come from Redis (one GET) and the
database stays the record: a write goes to the database first, then to the cache.

- **Redis down.** A read that cannot reach the cache reads the database, and so do this
  process's reads for the next ``SESSION_CACHE_RETRY_SECONDS`` (a hung Redis costs one
  request its socket timeout, not every request). A write or a delete that cannot reach
  it is logged and the request goes on (a cache must not become an outage). An entry the
  cache could not update is at most ``SESSION_CACHE_SECONDS`` old when Redis comes back,
  because every entry expires after that long (docs/ARCHITECTURE.md, "Sessions").
- **A replaced key.** A new key (login, a completed verification) leaves a marker under the
  old one in the cache for ``ROTATED_KEY_SECONDS``: a request that still carries the old
  key (a second tab, the page's automatic Continue and a click on it at once) is anonymous,
  as any unknown key, but its response neither deletes nor replaces the session cookie,
  which the browser holds with the new key by now (``SessionMiddleware`` below). The
  marker is never a way back into the session.
- **Keys.** A cookie's key reaches the database or the cache only if it has the shape
  of one we issue. A quoted cookie may carry an octal escape (``sessionid="abcdefgh\\000"``)
  that decodes to NUL, which PostgreSQL refuses with an error: a 500 on every page for
  whoever sends it. Any other key starts a new, empty session, exactly as a stale key does.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDatabaseStore
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from django.utils.crypto import get_random_string
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# Django issues 32 characters of [a-z0-9]; the session_key column holds 40.
_ISSUED_KEY = re.compile(r"[a-z0-9]{8,40}")
# What a cache that cannot be reached raises (Redis), besides the OS's own errors.
_UNREACHABLE = (RedisError, OSError)
# Until when (time.monotonic()) this process reads sessions from the database only.
_skip_cache_until = 0.0
# What the cache holds under a key cycle_key() replaced, and for how long: long enough for
# a request the browser sent before it received the new key (session data is a dict, so
# a string cannot be mistaken for it).
_ROTATED = "rotated"
ROTATED_KEY_SECONDS = 60


def _cache_failed() -> None:
    global _skip_cache_until
    _skip_cache_until = time.monotonic() + settings.SESSION_CACHE_RETRY_SECONDS


class SessionStore(CachedDatabaseStore):
    cache_key_prefix = "pollstr.session."

    def _validate_session_key(self, key: str | None) -> bool:
        return key is not None and _ISSUED_KEY.fullmatch(key) is not None

    def exists(self, session_key: str) -> bool:
        # A new key's uniqueness is the database's to say (the record), not the cache's.
        return super(CachedDatabaseStore, self).exists(session_key)

    def _cache_seconds(self, expiry: Any = None) -> int:
        # While loading, the expiry comes from the row: reading it from the session
        # would load the session again.
        age = self.get_expiry_age() if expiry is None else self.get_expiry_age(expiry=expiry)
        return min(age, settings.SESSION_CACHE_SECONDS)

    def load(self) -> dict[str, Any]:
        data, reachable = None, False
        if time.monotonic() >= _skip_cache_until:
            try:
                data = self._cache.get(self.cache_key)  # type: ignore[attr-defined]
            except _UNREACHABLE:
                logger.warning("Session cache unreachable: reading sessions from the database")
                _cache_failed()
            else:
                reachable = True
        if data == _ROTATED:
            # Anonymous, as for any unknown key; a write starts a session of a new key.
            self._session_key = None
            self.rotated_away = True
            return {}
        if data is not None:
            return data
        stored = self._get_session_from_db()  # type: ignore[attr-defined]
        if not stored:
            return {}
        data = self.decode(stored.session_data)
        if reachable:
            self._cache_write(data, self._cache_seconds(expiry=stored.expire_date))
        return data

    # A key drawn by cycle_key() that has no row yet: the next save inserts it.
    _key_unsaved = False
    # The request's key was replaced a moment ago (load() found the marker).
    rotated_away = False

    def cycle_key(self) -> None:
        """A new key for the same data (login, a completed verification), written once,
        when the response saves the session, instead of Django's INSERT now and UPDATE
        then. The old key's row goes at once, so it stops working at once; its cache entry
        becomes the marker of a replaced key."""
        data = self._session  # type: ignore[attr-defined]
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._key_unsaved = True
        self.modified = True
        # This request chose its new session (a sign-in from a stale tab, say): the
        # response sets its cookie as usual.
        self.rotated_away = False
        if old_key:
            self.delete(old_key, rotated=True)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            self.create()  # draws a key, then saves with must_create (here again)
            return
        if self._key_unsaved and not must_create:
            while True:
                try:
                    self._database_write(must_create=True)
                except CreateError:
                    # Taken (never seen in practice): another key, as create() does.
                    self._session_key = self._get_new_session_key()
                    continue
                break
        else:
            self._database_write(must_create)  # the database: the record
        self._key_unsaved = False
        self._cache_write(self._session, self._cache_seconds())  # type: ignore[attr-defined]

    def _database_write(self, must_create: bool) -> None:
        """Django's database store, without its transaction around the one statement when
        none is open: in autocommit a single INSERT or UPDATE is atomic by itself, and the
        BEGIN and COMMIT would be two more round trips on most requests that write. Inside
        a caller's transaction Django's own (a savepoint) keeps that transaction usable."""
        using = router.db_for_write(self.model)
        if transaction.get_connection(using).in_atomic_block:
            super(CachedDatabaseStore, self).save(must_create)
            return
        data = self._get_session(no_load=must_create)  # type: ignore[attr-defined]
        row = self.create_model_instance(data)
        try:
            row.save(force_insert=must_create, force_update=not must_create, using=using)
        except IntegrityError as error:
            if must_create:
                raise CreateError from error
            raise
        except DatabaseError as error:
            if not must_create:
                raise UpdateError from error
            raise

    def _get_new_session_key(self) -> str:
        # No look-up first: a key that exists already fails the insert, and create()
        # draws another (32 characters of 36: a collision is never seen in practice).
        return get_random_string(32, VALID_KEY_CHARS)

    def delete(self, session_key: str | None = None, *, rotated: bool = False) -> None:
        """The row and the cache entry; for a key cycle_key() replaced, the entry becomes
        the marker (one command either way)."""
        key = session_key if session_key is not None else self.session_key
        if key is None:
            return
        # One DELETE and nothing around it: Django's own store reads the row first, and
        # QuerySet.delete() wraps even a lone DELETE in BEGIN/COMMIT.
        connection = connections[router.db_for_write(self.model)]
        table = connection.ops.quote_name(self.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE session_key = %s", [key])  # noqa: S608
        cache_key = self.cache_key_prefix + key
        try:
            if rotated:
                self._cache.set(cache_key, _ROTATED, ROTATED_KEY_SECONDS)  # type: ignore[attr-defined]
            else:
                self._cache.delete(cache_key)  # type: ignore[attr-defined]
        except _UNREACHABLE:
            _cache_failed()
            logger.warning(
                "Session cache unreachable: a deleted session stays cached until it expires"
            )

    def _cache_write(self, data: dict[str, Any], seconds: int) -> None:
        try:
            self._cache.set(self.cache_key, data, seconds)  # type: ignore[attr-defined]
        except _UNREACHABLE:
            _cache_failed()
            logger.warning("Session cache unreachable: the session was saved to the database only")


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's, except for a request whose key was replaced a moment ago: its response
    leaves the session cookie alone. Django's would delete it (an empty session whose
    cookie was sent), and the browser would lose the new key another response has just
    given it: the voter signed out by their own double click."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        session = getattr(request, "session", None)
        if getattr(session, "rotated_away", False):
            # What this stale request wrote (an anonymous session) is not kept either.
            patch_vary_headers(response, ("Cookie",))
            return response
        return super().process_response(request, response)
