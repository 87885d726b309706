from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.utils import timezone

from polls.models import Question

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
    from tests.two_factor.helpers import mark_session_verified

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
