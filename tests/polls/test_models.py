from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from polls.models import Question, Vote


def test_published_excludes_future_questions(make_question):
    past = make_question(text="past")
    make_question(text="future", published_ago=timedelta(hours=-1))
    assert list(Question.objects.published()) == [past]


def test_a_poll_with_a_past_closing_date_is_closed(make_question):
    assert make_question(closes_in=timedelta(minutes=-1)).is_closed
    assert not make_question(closes_in=timedelta(minutes=5)).is_closed
    assert not make_question().is_closed


def test_a_poll_cannot_close_before_it_is_published(db):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Question.objects.create(text="x", pub_date=now, closes_at=now - timedelta(days=1))


def test_results_count_votes_and_percentages(question, make_user):
    vim, emacs = question.choices.all()
    for name in ("a", "b", "c"):
        Vote.objects.create(user=make_user(name), question=question, choice=vim)
    Vote.objects.create(user=make_user("d"), question=question, choice=emacs)

    results = question.results()

    assert results["total"] == 4
    assert [(c.text, c.votes, c.percent) for c in results["choices"]] == [
        ("vim", 3, 75),
        ("emacs", 1, 25),
    ]


def test_database_refuses_a_second_vote_by_the_same_user(question, user):
    vim, emacs = question.choices.all()
    Vote.objects.create(user=user, question=question, choice=vim)
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(user=user, question=question, choice=emacs)
