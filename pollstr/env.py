"""Typed readers for settings that come from the environment.

A typo in a setting must fail loudly at start-up, so every reader raises
ImproperlyConfigured on a value it cannot parse instead of falling back. A variable set
to the empty string counts as unset (so a copied `.env.example` means the defaults).
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    raw = os.environ.get(name)
    return None if raw is None or raw.strip() == "" else raw


def env_str(name: str, default: str = "") -> str:
    raw = _raw(name)
    return default if raw is None else raw


def env_bool(name: str, default: bool = False) -> bool:
    raw = _raw(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}."
    )


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number; got {raw!r}.") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = _raw(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number; got {raw!r}.") from None
    _check_range(name, value, minimum, maximum)
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = _raw(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_keys(
    name: str, *, reserved: frozenset[str] = frozenset(), min_key_length: int = 32
) -> list[tuple[str, str]]:
    """``v2:newkey,v1:oldkey`` (newest first) as ``[("v2", "newkey"), ("v1", "oldkey")]``;
    ``[]`` when unset. A version is 1-16 letters, digits, ``_`` or ``-``, each listed once;
    a key has at least ``min_key_length`` characters and no comma."""
    raw = _raw(name)
    if raw is None:
        return []
    keys: list[tuple[str, str]] = []
    for entry in (item.strip() for item in raw.split(",")):
        version, colon, key = entry.partition(":")
        if not colon or not re.fullmatch(r"[A-Za-z0-9_-]{1,16}", version):
            raise ImproperlyConfigured(
                f"{name} must be version:key pairs, newest first, e.g. "
                f"v2:<new key>,v1:<old key>; {entry[:20]!r}... has no valid version."
            )
        if version in reserved:
            raise ImproperlyConfigured(f"{name}: the version name {version!r} is reserved.")
        if len(key) < min_key_length:
            raise ImproperlyConfigured(
                f"{name}: the key of {version!r} must be at least {min_key_length} characters."
            )
        if version in dict(keys):
            raise ImproperlyConfigured(f"{name}: the version {version!r} is listed twice.")
        keys.append((version, key))
    return keys


def env_table(name: str, default: dict[str, float], *, whole: bool = False) -> dict[str, float]:
    """``GB:0.05,FR:0.07,*:0.10`` as ``{"GB": 0.05, "FR": 0.07, "*": 0.10}``, on top of
    ``default`` (an entry of the variable replaces the default's). Keys are ISO 3166
    region codes (two letters, any case) or ``*`` for every other region; values are
    numbers >= 0, whole numbers when ``whole``. The result always has a ``*`` entry."""
    table = dict(default)
    raw = _raw(name)
    for entry in [] if raw is None else (item.strip() for item in raw.split(",")):
        region, colon, amount = entry.partition(":")
        region = region.strip().upper()
        if not colon or not (region == "*" or re.fullmatch(r"[A-Z]{2}", region)):
            raise ImproperlyConfigured(
                f"{name} must be REGION:amount pairs with ISO region codes or *, e.g. "
                f"GB:0.05,*:0.10; got {entry!r}."
            )
        try:
            value = int(amount) if whole else float(amount)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise ImproperlyConfigured(
                f"{name}: the amount for {region} must be {kind}; got {amount!r}."
            ) from None
        _check_range(f"{name} ({region})", value, 0, None)
        table[region] = value
    if "*" not in table:
        raise ImproperlyConfigured(f"{name} needs a * entry: the amount for every other region.")
    return table


def env_directory(name: str) -> Path | None:
    """A directory the process writes into, created (with its parents) when missing;
    None when unset. One that cannot be created or written stops start-up."""
    raw = _raw(name)
    if raw is None:
        return None
    path = Path(raw)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a directory and cannot be created: {error.strerror}."
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ImproperlyConfigured(f"{name}={raw!r} is not writable by this process.")
    return path


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = (_raw(name) or default).strip().lower()
    if value not in choices:
        raise ImproperlyConfigured(
            f"{name} must be one of {', '.join(sorted(choices))}; got {value!r}."
        )
    return value


def _check_range(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}; got {value}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}; got {value}.")


@dataclass(frozen=True)
class DatabaseLimits:
    """Bounds on a PostgreSQL deployment's connections and waits, per process.

    Each process (a daphne server, a Celery pool child) keeps its own pool, so the
    server sees at most ``pool_max_size`` connections from it whatever the load; a
    request that finds every connection busy waits ``pool_timeout`` seconds, then fails
    (the web answers 503). ``statement_timeout_ms`` (0: none) also bounds a query
    waiting on a lock, and ``connect_timeout`` a server that does not answer.

    Statements are bound by the server (Django's ``server_side_binding``: the values
    travel apart from the SQL, not quoted into it in Python), and a connection prepares a
    statement it has run ``prepare_threshold`` times (psycopg's default, 5; 0: never), so
    the server parses and plans the reads and writes a voter repeats once per connection
    instead of every time (docs/ARCHITECTURE.md, "Prepared statements"). Behind a pooler
    that hands one client several server connections (PgBouncer in transaction mode
    before 1.21), set it to 0.
    """

    pool_min_size: int = 2
    pool_max_size: int = 10
    pool_timeout: float = 5.0
    statement_timeout_ms: int = 5000
    connect_timeout: int = 5
    prepare_threshold: int = 5

    def __post_init__(self) -> None:
        if self.pool_min_size > self.pool_max_size:
            raise ImproperlyConfigured(
                f"DATABASE_POOL_MIN_SIZE ({self.pool_min_size}) must not exceed "
                f"DATABASE_POOL_MAX_SIZE ({self.pool_max_size})."
            )

    def options(self, from_url: dict[str, str]) -> dict[str, Any]:
        """psycopg connection OPTIONS: the URL's query parameters win over these limits."""
        options: dict[str, Any] = {
            "connect_timeout": str(self.connect_timeout),
            "server_side_binding": True,
            # None: psycopg never prepares (Django's default).
            "prepare_threshold": self.prepare_threshold or None,
        }
        if self.statement_timeout_ms:
            # libpq applies later -c settings last, so a statement_timeout in the URL wins.
            own = f"-c statement_timeout={self.statement_timeout_ms}"
            options["options"] = f"{own} {from_url['options']}" if "options" in from_url else own
        return {
            **options,
            **{key: value for key, value in from_url.items() if key != "options"},
            "pool": {
                "min_size": self.pool_min_size,
                "max_size": self.pool_max_size,
                "timeout": self.pool_timeout,
                "name": "pollstr",
            },
        }


def database_from_url(url: str, limits: DatabaseLimits | None = None) -> dict[str, Any]:
    """Translate postgres://user:pass@host:port/name or sqlite:///path into a DATABASES entry.

    PostgreSQL connections come from a psycopg pool bounded by ``limits``; SQLite (a
    file, one process) has no pool and takes no limits.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(
                "DATABASE_URL must name a database, e.g. postgres://localhost/pollstr."
            )
        return {
            # Django's, with a pool check that costs a round trip only when needed.
            "ENGINE": "pollstr.db.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": (limits or DatabaseLimits()).options(dict(parse_qsl(parts.query))),
            # A pooled connection goes back to the pool at the end of each request
            # (Django refuses a pool with persistent connections), and the pool checks
            # it before handing it out again (pollstr/db/postgresql/base.py: a round trip
            # only for a connection whose socket has something to read), so a server
            # restart costs no request.
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": True,
        }
    if scheme == "sqlite":
        # sqlite:///relative.sqlite3 and sqlite:////absolute/path.sqlite3
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if not path:
            raise ImproperlyConfigured(
                "DATABASE_URL for SQLite needs a path: sqlite:///db.sqlite3."
            )
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {scheme!r} is not supported; use postgres:// or sqlite:///."
    )


def embedded_secret_key(path: Path) -> str:
    """Read, or create once, the secret key file of the embedded (single machine) setup."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    # O_EXCL: two processes starting at once must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
