"""ServiceUnavailableMiddleware: an unavailable database or Redis is a 503, a bug a 500.

The views below raise the exceptions the real drivers raise (the fault tests in
tests/faults/ make real servers raise them); this file pins the mapping, the page, the
htmx fragment and the single log line, on either database.
"""

from __future__ import annotations

import html
import json
import logging
import sqlite3
from typing import Any

import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.db import OperationalError, ProgrammingError
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from psycopg_pool import PoolTimeout

from pollstr.unavailable import MESSAGE, RETRY_AFTER, unavailable_service


def _wrapped(cause: BaseException) -> OperationalError:
    """Django's OperationalError as its DatabaseErrorWrapper raises it: driver error as cause."""
    error = OperationalError(str(cause))
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("exception", "service"),
    [
        (_wrapped(PoolTimeout("couldn't get a connection after 5.00 sec")), "database"),
        (_wrapped(psycopg.errors.QueryCanceled("canceling statement")), "database"),
        (_wrapped(psycopg.OperationalError("too many clients already")), "database"),
        (_wrapped(sqlite3.OperationalError("database is locked")), "database"),
        (_wrapped(sqlite3.OperationalError("database table is locked: t")), "database"),
        (_wrapped(sqlite3.OperationalError("no such table: polls_question")), None),
        (ProgrammingError("relation does not exist"), None),
        (redis.exceptions.ConnectionError("Connection refused"), "redis"),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), "redis"),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset"), "redis"),
        (redis.exceptions.AuthenticationError("invalid password"), None),
        (redis.exceptions.ResponseError("WRONGTYPE"), None),
        (ValueError("a bug"), None),
    ],
)
def test_which_failures_count_as_a_service_being_unavailable(exception, service):
    assert unavailable_service(exception) == service


# --- through Django's whole stack --------------------------------------------------------------


def _raises(exception: Exception):
    def view(request: HttpRequest) -> HttpResponse:
        raise exception

    return view


urlpatterns = [
    path("pool/", _raises(_wrapped(PoolTimeout("couldn't get a connection after 5.00 sec")))),
    path("redis/", _raises(redis.exceptions.ConnectionError("Error 111 connecting"))),
    path("bug/", _raises(ValueError("a bug"))),
]


@pytest.fixture
def client_500() -> Client:
    """A client that gets the 500 page instead of the view's exception."""
    return Client(raise_request_exception=False)


@pytest.mark.urls("tests.test_unavailable")
@pytest.mark.parametrize(("url", "service"), [("/pool/", "database"), ("/redis/", "redis")])
def test_an_unavailable_service_answers_a_503_page_with_retry_after(
    client_500: Client, caplog: pytest.LogCaptureFixture, url: str, service: str
) -> None:
    with caplog.at_level(logging.INFO):
        response = client_500.get(url)

    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER)
    assert "no-store" in response["Cache-Control"]
    page = html.unescape(response.content.decode())
    assert MESSAGE in page
    assert page.lstrip().startswith("<!doctype html>")
    # One WARNING line, no traceback, and no second ERROR line from django.request.
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.levelname) for r in records] == [("pollstr.unavailable", "WARNING")]
    assert records[0].getMessage().startswith(f"{service} unavailable, answered 503 to GET {url}")
    assert records[0].exc_info is None


@pytest.mark.urls("tests.test_unavailable")
def test_an_htmx_request_gets_a_fragment_and_an_event(client_500: Client) -> None:
    response = client_500.post("/pool/", headers={"HX-Request": "true"})

    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER)
    fragment = html.unescape(response.content.decode())
    assert MESSAGE in fragment
    assert "<html" not in fragment
    assert 'role="alert"' in fragment
    event = json.loads(response["HX-Trigger"])
    assert event == {"pollstr:unavailable": {"message": MESSAGE, "retryAfter": RETRY_AFTER}}


@pytest.mark.urls("tests.test_unavailable")
def test_any_other_error_is_still_a_500(client_500: Client) -> None:
    assert client_500.get("/bug/").status_code == 500


@pytest.mark.urls("tests.test_unavailable")
def test_the_503_page_reads_nothing_from_the_database(
    db: None, client_500: Client, django_assert_num_queries: Any
) -> None:
    # The database may be the service that failed: the page must not need it.
    with django_assert_num_queries(0):
        assert client_500.get("/pool/").status_code == 503


# --- a session that cannot be loaded ---------------------------------------------------------


class SessionStore(DatabaseSessionStore):
    """The database session store, on a database whose pool has no connection to give."""

    def load(self) -> dict[str, Any]:
        raise _wrapped(PoolTimeout("couldn't get a connection after 5.00 sec"))


def test_a_session_that_cannot_be_loaded_answers_503_on_a_protected_page(
    client_500: Client, settings: Any
) -> None:
    # Loading the user for the verified-session check happens before any view runs,
    # where Django would turn the error into a 500 before process_exception sees it.
    settings.SESSION_ENGINE = "tests.test_unavailable"
    client_500.cookies[settings.SESSION_COOKIE_NAME] = "k" * 32

    response = client_500.get("/polls/1/")

    assert response.status_code == 503
    assert MESSAGE in html.unescape(response.content.decode())


def test_the_middleware_wraps_the_views_after_the_user_is_known() -> None:
    order = settings.MIDDLEWARE
    ours = order.index("pollstr.unavailable.ServiceUnavailableMiddleware")
    assert order.index("django.contrib.auth.middleware.AuthenticationMiddleware") < ours
    assert order.index("django_htmx.middleware.HtmxMiddleware") < ours
    assert ours < order.index("two_factor.middleware.VerifiedSessionMiddleware")


@pytest.mark.urls("tests.test_unavailable")
@pytest.mark.parametrize(
    ("method", "referer", "again"),
    [
        ("get", None, "/pool/?page=2"),
        ("post", "http://testserver/2fa/", "http://testserver/2fa/"),
        ("post", "https://elsewhere.example/", "/"),
        ("post", None, "/"),
    ],
)
def test_try_again_repeats_a_page_or_returns_to_the_form(
    client_500: Client, method: str, referer: str | None, again: str
) -> None:
    headers = {"Referer": referer} if referer else {}
    response = getattr(client_500, method)("/pool/?page=2", headers=headers)

    assert response.status_code == 503
    assert f'href="{again}"' in response.content.decode()
