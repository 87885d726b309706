"""Fixtures for the verification-core tests: eager tasks, a clean sandbox, numbers.

A test module takes the fixtures with ``from tests.two_factor.fixtures import *`` (only
the names in ``__all__``) and the helpers by name; the shared users and clients come
from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.test import Client

from two_factor import services
from two_factor.models import PhoneNumber, Status, Verification, VerificationEvent
from two_factor.session import session_key_hash

__all__ = ["eager_retries", "eager_tasks", "make_verification", "phone", "two_factor_settings"]

NUMBER = "+447911123456"
OTHER_NUMBER = "+447400123456"


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
def phone(user: AbstractBaseUser) -> PhoneNumber:
    """The user's stored, not yet verified, number."""
    return PhoneNumber.objects.create(user=user, number=NUMBER)


@pytest.fixture
def make_verification(user: AbstractBaseUser) -> Callable[..., Verification]:
    """A Verification row in any status, with its creation event (no tasks run)."""

    def make(
        status: str = Status.QUEUED,
        *,
        owner: AbstractBaseUser | None = None,
        session_key: str = "session-key",
        number: str = NUMBER,
        **fields: Any,
    ) -> Verification:
        verification = Verification.objects.create(
            user=owner or user,
            session_key_hash=session_key_hash(session_key),
            number=number,
            status=status,
            **fields,
        )
        VerificationEvent.objects.create(
            verification=verification, to_status=status, reason="made by a test"
        )
        return verification

    return make


def start_verification(
    client: Client, user: AbstractBaseUser, capture: Callable[..., Any]
) -> Verification:
    """Start a verification for the client's session and run its send task."""
    with capture(execute=True):
        verification = services.verification_start(
            user=user, session_key=client_session_key(client), ip="127.0.0.1"
        )
    verification.refresh_from_db()
    return verification


def client_session_key(client: Client) -> str:
    # The test client creates and saves a session (and its cookie) on first access.
    return client.session.session_key


def latest_code(number: str = NUMBER) -> str:
    from two_factor.gateways.sandbox import sandbox_messages_for

    messages = sandbox_messages_for(number)
    assert messages, f"the sandbox sent nothing to {number}"
    return messages[0]["code"]


def wrong_code_for(code: str) -> str:
    return "".join(str((int(digit) + 1) % 10) for digit in code)
