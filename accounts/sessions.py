"""The session store: Django's database sessions, looking up only keys it could have issued."""

from __future__ import annotations

import re

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

# Django issues 32 characters of [a-z0-9]; the session_key column holds 40.
_ISSUED_KEY = re.compile(r"[a-z0-9]{8,40}")


class SessionStore(DatabaseSessionStore):
    """A cookie's key reaches the database only if it has the shape of one we issue.

    The key comes from the browser. A quoted cookie may carry an octal escape
    (``sessionid="abcdefgh\\000"``) that decodes to NUL, which PostgreSQL refuses with an
    error: a 500 on every page for whoever sends it. Any other key starts a new, empty
    session, exactly as a stale key does.
    """

    def _validate_session_key(self, key: str | None) -> bool:
        return key is not None and _ISSUED_KEY.fullmatch(key) is not None
