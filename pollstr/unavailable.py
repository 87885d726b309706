"""Answer 503 "try again in a moment" when a service behind a request is unavailable.

A database with every pooled connection busy, unreachable, or slower than the statement
timeout, and a Redis that refuses or hangs (the cache behind the rate limiter), are
passing conditions: the person should retry, a proxy or client may too (``Retry-After``),
and an operator needs one log line, not a traceback per request. Anything else is a bug
and stays a 500.

The database errors arrive as Django's ``OperationalError`` (psycopg's ``PoolTimeout``,
``QueryCanceled`` and connection errors all subclass psycopg's, which Django wraps); the
Redis ones as redis-py's connection and timeout errors, raised through Django's cache.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import redis
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext, gettext_noop
from django_htmx.http import trigger_client_event

from pollstr.safe_redirect import safe_next_url

logger = logging.getLogger(__name__)

MESSAGE = gettext_noop("We're busy right now. Please try again in a moment.")
RETRY_AFTER = 5  # seconds
# Sent with the htmx fragment: htmx swaps no 5xx body by default, a page script can
# listen for this event and show the message where it fits.
HTMX_EVENT = "pollstr:unavailable"

# redis-py's errors that mean "Redis is not answering now"; a wrong password
# (AuthenticationError, a ConnectionError too) is a configuration bug, not a busy moment.
_REDIS_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
_REDIS_MISCONFIGURED = (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)
# SQLite raises OperationalError for missing tables too: only a lock is a busy moment.
_SQLITE_BUSY = ("database is locked", "database table is locked")


def unavailable_service(exc: BaseException) -> str | None:
    """The service ``exc`` says is unavailable ("database" or "redis"), else None."""
    if isinstance(exc, OperationalError):
        cause = exc.__cause__
        if isinstance(cause, sqlite3.OperationalError):
            return "database" if str(cause).startswith(_SQLITE_BUSY) else None
        return "database"
    if isinstance(exc, _REDIS_UNAVAILABLE) and not isinstance(exc, _REDIS_MISCONFIGURED):
        return "redis"
    return None


def unavailable_response(request: HttpRequest) -> HttpResponse:
    """The 503 a person (or, for htmx, the page) sees; renders nothing from the database."""
    htmx = request.headers.get("HX-Request") == "true"
    template = "503.html#message" if htmx else "503.html"
    message = gettext(MESSAGE)
    context = {"message": message, "retry_after": RETRY_AFTER, "again_url": _again_url(request)}
    body = render_to_string(template, context)
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    add_never_cache_headers(response)
    if htmx:
        trigger_client_event(response, HTMX_EVENT, {"message": message, "retryAfter": RETRY_AFTER})
    return response


def _again_url(request: HttpRequest) -> str:
    """Where "Try again" goes: the same page for a GET; for a form post (which a link
    cannot repeat) the page the form was on."""
    if request.method == "GET":
        return request.get_full_path()
    return safe_next_url(request, request.headers.get("Referer"), "/")


class ServiceUnavailableMiddleware:
    """Turns an unavailable database or Redis into a 503 page with ``Retry-After``.

    Sits after the authentication and htmx middleware and before any middleware whose
    ``process_view`` reads the user: Django turns an exception raised in a
    ``process_view`` into a 500 before any ``process_exception`` sees it, so the user
    (and with it the session) is loaded here, where a failure can still become a 503.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        try:
            _ = user is not None and user.is_authenticated
        except Exception as exc:
            response = self.process_exception(request, exc)
            if response is None:
                raise
            return response
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        service = unavailable_service(exception)
        if service is None:
            return None
        first_line = (str(exception).strip().splitlines() or [""])[0]
        logger.warning(
            "%s unavailable, answered 503 to %s %s: %s: %s",
            service,
            request.method,
            request.path,
            type(exception).__name__,
            first_line,
        )
        response = unavailable_response(request)
        # The line above is the record: without this flag Django logs every 503 again
        # at ERROR level ("Service Unavailable: /path"), once per request of an outage.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
