"""A real daphne against a database that is exhausted, locked or gone: 503s, never 500s.

The server connects as a private PostgreSQL role made for this module, with a connection
limit of its own (the shared server's slots are never at stake) and a pool smaller than
that limit, so the count of the role's server connections shows what bounds them: the
pool, whatever the number of concurrent clients. A table lock held by the test stands
for a slow database; a port nothing listens on, for a database that is down.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from psycopg import sql

from polls.models import Question
from tests import stack
from tests.conftest import PASSWORD

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.skipif(
        not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
        reason="database fault tests need PostgreSQL (DATABASE_URL): SQLite has no server",
    ),
]

POOL_MAX = 4
ROLE_CONNECTION_LIMIT = 10  # above POOL_MAX: the pool, not the server, must bound them
POOL_TIMEOUT = 1.0
STATEMENT_TIMEOUT_MS = 1500
# Slack for a loaded 2-core machine: thread start-up, daphne's queue, rendering.
MARGIN = 3.0
CLIENTS = 50
REQUESTS_EACH = 4
SENTENCE = "We're busy right now. Please try again in a moment."


# --- PostgreSQL as the test's own superuser connection sees it ---------------------------------


def admin_conninfo() -> str:
    """The test database, as the test process's (superuser) role, for psycopg directly."""
    params = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=params["HOST"] or "127.0.0.1",
        port=params["PORT"] or None,
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        dbname=params["NAME"],
    )


@dataclass(frozen=True)
class Role:
    name: str
    password: str

    def database_url(self) -> str:
        params = connection.settings_dict
        host = params["HOST"] or "127.0.0.1"
        port = f":{params['PORT']}" if params["PORT"] else ""
        return f"postgres://{self.name}:{self.password}@{host}{port}/{params['NAME']}"

    def server_connections(self, admin: psycopg.Connection[Any]) -> int:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [self.name]
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def role(django_db_setup: None, django_db_blocker: Any) -> Iterator[Role]:
    """A login role with a low CONNECTION LIMIT and the app's rights on the test database."""
    made = Role(name=f"pollstr_faults_{secrets.token_hex(4)}", password=secrets.token_hex(16))
    name = sql.Identifier(made.name)
    with django_db_blocker.unblock(), psycopg.connect(admin_conninfo(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT {}").format(
                name, sql.Literal(made.password), sql.Literal(ROLE_CONNECTION_LIMIT)
            )
        )
        try:
            for grant in (
                "GRANT USAGE ON SCHEMA public TO {}",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}",
            ):
                admin.execute(sql.SQL(grant).format(name))
            yield made
        finally:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [made.name],
            )
            admin.execute(sql.SQL("DROP OWNED BY {}").format(name))
            admin.execute(sql.SQL("DROP ROLE {}").format(name))


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    """A daphne child on ``database_url`` with a small pool and short timeouts; no Redis."""
    limits = {
        "DATABASE_POOL_MIN_SIZE": "1",
        "DATABASE_POOL_MAX_SIZE": str(POOL_MAX),
        "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT),
        "DATABASE_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS),
        # Without Redis: the embedded cache and channel layer, the in-memory broker.
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "memory://localhost/",
    }
    return stack.stack_env(
        database_url=database_url,
        redis_url=stack.redis_url_for_tests(),
        extra={**limits, **extra},
    )


@pytest.fixture(scope="module")
def server(role: Role) -> Iterator[stack.WebServer]:
    with stack.daphne_server(server_env(role.database_url())) as web:
        yield web


# --- the site's data, committed so the server sees it ------------------------------------------


@pytest.fixture
def question(transactional_db: None, make_question: Callable[..., Question]) -> Question:
    return make_question()


@pytest.fixture
def session_cookie(transactional_db: None) -> dict[str, str]:
    """The cookie of a logged-in (unverified) session stored in the test database."""
    user = get_user_model().objects.create_user(username="busy", password=PASSWORD)
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return {name: client.cookies[name].value}


# --- load --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    path: str
    status: int
    retry_after: str | None
    seconds: float
    body: str


def fetch(url: str, cookies: dict[str, str]) -> Answer:
    session = requests.Session()
    session.trust_env = False  # loopback only: no proxy from the environment
    started = time.monotonic()
    response = session.get(url, cookies=cookies, allow_redirects=False, timeout=30)
    return Answer(
        path=url,
        status=response.status_code,
        retry_after=response.headers.get("Retry-After"),
        seconds=time.monotonic() - started,
        body=response.text,
    )


def fire(base: str, paths: list[str], cookies: dict[str, str], *, clients: int, each: int):
    """``clients`` threads, each sending ``each`` GETs round the paths: every answer."""
    urls = [base + paths[i % len(paths)] for i in range(clients * each)]
    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(lambda url: fetch(url, cookies), urls))


def assert_no_server_errors(answers: list[Answer]) -> None:
    statuses = Counter(answer.status for answer in answers)
    wrong = {status: n for status, n in statuses.items() if status >= 400 and status != 503}
    assert not wrong, f"answers other than 2xx/3xx/503: {wrong} (all: {dict(statuses)})"
    unavailable = [answer for answer in answers if answer.status == 503]
    assert all(answer.retry_after for answer in unavailable), "a 503 without Retry-After"
    assert all(SENTENCE in html.unescape(a.body) for a in unavailable), unavailable[:1]


class ConnectionSampler:
    """Counts the role's server connections every 20 ms on its own connection."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(admin_conninfo(), autocommit=True) as admin:
            while not self._stop.is_set():
                self.samples.append(self.role.server_connections(admin))
                time.sleep(0.02)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold an ACCESS EXCLUSIVE lock on ``table`` (every read of it waits) until exit."""
    with psycopg.connect(admin_conninfo()) as admin:
        admin.execute(
            sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table))
        )
        try:
            yield
        finally:
            admin.rollback()


# --- the tests ---------------------------------------------------------------------------------


def test_fifty_concurrent_clients_are_served_within_the_pool_and_never_get_a_500(
    server: stack.WebServer, role: Role, question: Question, session_cookie: dict[str, str]
) -> None:
    # The index reads the questions; a protected poll loads the session and the user
    # before it redirects to verification; /2fa/ reads the phone and the verifications.
    paths = ["/", f"/polls/{question.pk}/", "/2fa/"]

    with ConnectionSampler(role) as sampler:
        answers = fire(server.url, paths, session_cookie, clients=CLIENTS, each=REQUESTS_EACH)

    assert len(answers) == CLIENTS * REQUESTS_EACH
    assert_no_server_errors(answers)
    served = [answer for answer in answers if answer.status < 400]
    assert len(served) >= len(answers) // 2, Counter(answer.status for answer in answers)
    assert len(sampler.samples) >= 5, "the sampler did not run during the burst"
    assert max(sampler.samples) <= POOL_MAX, f"connections seen: {sorted(set(sampler.samples))}"
    log = server.log_text()
    assert "Internal Server Error" not in log
    assert "too many connections" not in log


def test_a_locked_table_answers_503_within_the_statement_timeout_instead_of_hanging(
    server: stack.WebServer, role: Role, question: Question, session_cookie: dict[str, str]
) -> None:
    bound = STATEMENT_TIMEOUT_MS / 1000 + POOL_TIMEOUT + MARGIN

    with table_locked(Question._meta.db_table):
        answers = fire(server.url, ["/"], session_cookie, clients=12, each=2)

    assert_no_server_errors(answers)
    assert {answer.status for answer in answers} == {503}
    slowest = max(answer.seconds for answer in answers)
    assert slowest < bound, f"slowest answer took {slowest:.1f} s (bound {bound:.1f} s)"
    # The lock is gone: the same page answers again, from the same pool.
    assert fetch(server.url + "/", session_cookie).status == 200
    log = server.log_text()
    assert "database unavailable, answered 503 to GET /" in log
    assert "statement timeout" in log
    assert "Internal Server Error" not in log
    assert "Traceback" not in log


def test_an_unreachable_database_answers_503_after_the_pool_timeout(
    session_cookie: dict[str, str],
) -> None:
    nowhere = f"postgres://pollstr@127.0.0.1:{stack.free_port()}/pollstr"
    # Short enough for the start-up probe (a GET of /, one second) to get its 503.
    env = server_env(nowhere, DATABASE_POOL_TIMEOUT="0.3")

    with stack.daphne_server(env) as web:
        # The index queries the database; a logged-in request already needs it to load
        # its session, before any view runs.
        anonymous = fetch(web.url + "/", {})
        logged_in = fetch(web.url + "/polls/1/", session_cookie)
        login_page = fetch(web.url + "/accounts/login/", {})
        log = web.log_text()

    for answer in (anonymous, logged_in):
        assert answer.status == 503, answer
        assert answer.retry_after
        assert SENTENCE in html.unescape(answer.body)
        assert answer.seconds < 0.3 + MARGIN
    # A page that needs no database still answers.
    assert login_page.status == 200
    assert "Internal Server Error" not in log


def test_connections_the_server_ended_cost_no_request(
    role: Role, question: Question, session_cookie: dict[str, str]
) -> None:
    """The pool hands out a connection without a round trip when its socket is quiet
    (pollstr/db/postgresql/base.py); one whose backend was ended meanwhile (a restart,
    an administrator) has the server's goodbye waiting on it, and is replaced unseen.
    (With the default pool timeout: the module's one-second pool can run out of time
    while psycopg_pool backs off between replacements, whichever check it uses.)"""
    paths = ["/", f"/polls/{question.pk}/", "/2fa/"]
    env = server_env(role.database_url(), DATABASE_POOL_TIMEOUT="5")
    with stack.daphne_server(env) as web:
        warm = fire(web.url, paths, session_cookie, clients=POOL_MAX, each=3)
        assert {a.status for a in warm} <= {200, 302}, Counter(a.status for a in warm)
        with psycopg.connect(admin_conninfo(), autocommit=True) as admin:
            assert role.server_connections(admin) >= 1
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [role.name],
            )
            deadline = time.monotonic() + 5
            while role.server_connections(admin) and time.monotonic() < deadline:
                time.sleep(0.05)

        after = fire(web.url, paths, session_cookie, clients=POOL_MAX, each=3)
        log = web.log_text()

    assert {a.status for a in after} <= {200, 302}, Counter(a.status for a in after)
    assert "answered 503" not in log
    assert "Internal Server Error" not in log
