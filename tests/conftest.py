from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache, caches
from django.test import Client
from django.utils import timezone

from polls.models import Question
from tests.clock import FakeClock
from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import create_verification, mark_session_verified
from two_factor.models import PhoneNumber, Status, Verification

PASSWORD = "correct-horse-battery"


@pytest.fixture
def make_user(db: None) -> Callable[..., AbstractBaseUser]:
    def make(username: str = "alice", password: str = PASSWORD) -> AbstractBaseUser:
        return get_user_model().objects.create_user(username=username, password=password)

    return make


@pytest.fixture
def user(make_user: Callable[..., AbstractBaseUser]) -> AbstractBaseUser:
    return make_user()


@pytest.fixture
def logged_in_client(client: Client, user: AbstractBaseUser) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def voter_client(logged_in_client: Client, user: AbstractBaseUser) -> Client:
    """A logged-in client whose session passed phone verification."""
    mark_session_verified(logged_in_client, user)
    return logged_in_client


@pytest.fixture
def make_question(db: None) -> Callable[..., Question]:
    def make(
        text: str = "Best editor?",
        choices: tuple[str, ...] = ("vim", "emacs"),
        published_ago: timedelta = timedelta(hours=1),
        closes_in: timedelta | None = None,
    ) -> Question:
        now = timezone.now()
        question = Question.objects.create(
            text=text,
            pub_date=now - published_ago,
            closes_at=now + closes_in if closes_in is not None else None,
        )
        for choice in choices:
            question.choices.create(text=choice)
        return question

    return make


@pytest.fixture
def question(make_question: Callable[..., Question]) -> Question:
    return make_question()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The app's clocks frozen at the present; `clock.advance(seconds)` moves them."""
    return FakeClock().install(monkeypatch)


@pytest.fixture(scope="session", autouse=True)
def _compiled_translations() -> None:
    """The catalogues Django reads (locale/*/LC_MESSAGES/django.mo), compiled once per
    session from the committed .po files: compiled files are never committed, and
    compilemessages skips a catalogue whose .mo is already newer than its .po."""
    from django.conf import settings
    from django.core.management import call_command
    from django.utils.translation import trans_real

    call_command(
        "compilemessages",
        verbosity=0,
        locale=[code for code, _name in settings.LANGUAGES if code != "en"],
        ignore_patterns=[".venv", "var", "staticfiles", "node_modules"],
    )
    # Catalogues read before they were compiled would stay empty for the whole session.
    trans_real._translations = {}
    trans_real._default = None


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Every test starts and ends in the default language (English): a request the test
    client made in French leaves French active in this thread otherwise."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    """Every test starts with empty rate-limit and budget counters (the sign-up limit
    per address would otherwise carry over between tests that all come from 127.0.0.1),
    and reads every poll afresh (polls/ballots.py)."""
    from polls.ballots import ballot_forget

    cache.clear()
    ballot_forget()


@pytest.fixture
def redis_cache(settings) -> Iterator[tuple[object, str]]:
    """Point the default cache at a real Redis under a prefix of its own."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"pollstr-test-limits-{uuid.uuid4().hex}"
    client = redis.Redis.from_url(url)
    client.ping()  # fail loudly here rather than as a confusing limiter error
    # The setting_changed handler closes the old caches and resets the per-thread
    # handles, so every thread (and `cache`) builds a RedisCache from this.
    settings.CACHES = {
        "default": {
            "BACKEND": "pollstr.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    assert caches["default"].__class__.__name__ == "RedisCache"
    yield client, prefix
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()


# --- phone verification: settings, tasks, rows --------------------------------------------


@pytest.fixture
def two_factor_settings(settings: Any) -> Iterator[Any]:
    """Sandbox gateway on a clean cache, no injected faults, fast hashing and retries."""
    cache.clear()
    settings.TWO_FACTOR_GATEWAY = "sandbox"
    settings.TWO_FACTOR_SANDBOX_LATENCY = 0
    settings.TWO_FACTOR_SANDBOX_FAILURE_RATE = 0
    settings.TASK_RETRY_BASE_DELAY = 0.01
    settings.TASK_RETRY_MAX_DELAY = 0.05
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    yield settings
    cache.clear()


@pytest.fixture
def eager_tasks(two_factor_settings: Any) -> Iterator[None]:
    """Celery tasks run in the calling thread; retries re-run synchronously."""
    from pollstr.celery import app

    # Read the app's config before touching settings: the first read loads it from
    # settings, and the restore below must put back the value from before this test.
    saved = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    two_factor_settings.CELERY_TASK_ALWAYS_EAGER = True
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = saved


@pytest.fixture
def eager_retries(eager_tasks: None) -> None:
    """Eager tasks whose `self.retry` re-runs them at once, as a worker would later.

    With eager propagation on (the project's setting), Celery raises `Retry` to the
    caller instead of re-running the task; turned off, `apply()` runs the retry
    synchronously and keeps the task id, so the whole retry policy runs in-process.
    (`eager_tasks` puts the setting back afterwards.)
    """
    from pollstr.celery import app

    app.conf.task_eager_propagates = False


@pytest.fixture
def post(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """POST with the on_commit callbacks (the enqueued tasks) run, as after a commit."""

    def do(client: Client, url: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data or {}, **extra)

    return do


@pytest.fixture
def phone(user: AbstractBaseUser) -> PhoneNumber:
    """The user's stored, not yet verified, number."""
    return PhoneNumber.objects.create(user=user, number=NUMBER)


@pytest.fixture
def make_verification(user: AbstractBaseUser) -> Callable[..., Verification]:
    """`create_verification` for `user` unless an `owner` is given."""

    def make(
        status: str = Status.QUEUED, *, owner: AbstractBaseUser | None = None, **fields: Any
    ) -> Verification:
        return create_verification(user=owner or user, status=status, **fields)

    return make


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Drop stray connections to the PostgreSQL test database before it is destroyed.

    Connections opened by worker threads (channels' database_sync_to_async, the
    concurrency tests) or by child processes can outlive their tests; PostgreSQL then
    refuses to drop the database and leaves it behind for the next run.
    """
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
