from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

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
