"""Fixtures for tests that run Pollstr's real processes against real Redis and PostgreSQL.

Child processes (tests/stack.py) use pytest-django's test database and a Redis namespace
of their own; ``use_redis_namespace`` moves the test process into the same namespace, so
both sides share the sandbox's state, rate limits, channel groups and the Celery queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests import stack

POSTGRES_REASON = (
    "integration tests need PostgreSQL: a separate worker process cannot share the SQLite "
    "test database; run `make test` with PostgreSQL up"
)

requires_postgres = pytest.mark.skipif(
    not django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason=POSTGRES_REASON,
)


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = stack.redis_url_for_tests()
    if not stack.redis_ping(url):
        pytest.skip(f"integration tests need Redis at TEST_REDIS_URL={url}; run `make services`")
    return url


@pytest.fixture(scope="session")
def test_database_url(django_db_setup: None, django_db_blocker: Any) -> str:
    """URL of the test database pytest-django created, for child processes."""
    with django_db_blocker.unblock():
        return stack.database_url(connection.settings_dict)


@pytest.fixture(scope="session")
def child_env(test_database_url: str, redis_url: str) -> Iterator[Callable[..., dict[str, str]]]:
    """``child_env(prefix, **extra)``: environment for a child in Redis namespace ``prefix``.

    Every namespace handed out is deleted from Redis at the end of the session.
    """
    prefixes: set[str] = set()

    def make(prefix: str = stack.SESSION_PREFIX, **extra: str) -> dict[str, str]:
        prefixes.add(prefix)
        return stack.stack_env(
            database_url=test_database_url, redis_url=redis_url, prefix=prefix, extra=extra
        )

    yield make
    for prefix in prefixes:
        stack.redis_delete_prefix(redis_url, prefix)


@pytest.fixture
def use_redis_namespace(settings: Any, redis_url: str) -> Iterator[Callable[[str], None]]:
    """``use_redis_namespace(prefix)``: point this process's cache, channel layer and
    Celery broker at the namespace a child was started in (restored after the test)."""
    from pollstr.celery import app

    with ExitStack() as restore:

        def use(prefix: str) -> None:
            for name, value in stack.redis_settings(redis_url=redis_url, prefix=prefix).items():
                setattr(settings, name, value)
            restore.enter_context(stack.celery_broker(app, redis_url=redis_url, prefix=prefix))

        yield use
