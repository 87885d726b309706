"""polls/ballots.py: the ballot page's question and choices, kept by a process a moment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from polls import ballots
from polls.models import Choice, Question, Vote


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch):
    """Move the ballots' clock past BALLOT_SECONDS."""
    start = ballots._now()
    offset = [0.0]
    monkeypatch.setattr(ballots, "_now", lambda: start + offset[0])

    def advance(seconds: float = ballots.BALLOT_SECONDS + 0.1) -> None:
        offset[0] += seconds

    return advance


def _statements(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    return [query["sql"] for query in captured.captured_queries]


def test_the_next_voter_of_a_poll_costs_no_read_of_its_question_or_choices(
    voter_client, question
) -> None:
    url = reverse("polls:detail", args=[question.pk])
    first = _statements(voter_client, url)
    again = _statements(voter_client, url)

    def reads(statements: list[str], table: str) -> int:
        return sum(f'FROM "{table}"' in sql for sql in statements)

    assert reads(first, "polls_question") == 1
    assert reads(first, "polls_choice") == 1
    assert reads(again, "polls_question") == 0
    assert reads(again, "polls_choice") == 0
    assert len(again) == len(first) - 2
    assert b"vim" in voter_client.get(url).content


def test_an_edit_saved_through_the_orm_shows_at_once(voter_client, question) -> None:
    url = reverse("polls:detail", args=[question.pk])
    assert b"Best editor?" in voter_client.get(url).content

    question.text = "Best text editor?"
    question.save()
    question.choices.create(text="nano")
    Choice.objects.filter(question=question, text="emacs").get().delete()

    page = voter_client.get(url).content
    assert b"Best text editor?" in page
    assert b"nano" in page
    assert b"vim" in page
    assert b"emacs" not in page


def test_a_change_this_process_did_not_save_shows_within_ballot_seconds(
    voter_client, question, later
) -> None:
    url = reverse("polls:detail", args=[question.pk])
    voter_client.get(url)
    # As another process's save looks from here: no signal in this one.
    Question.objects.filter(pk=question.pk).update(text="Renamed elsewhere")

    assert b"Best editor?" in voter_client.get(url).content
    later()
    assert b"Renamed elsewhere" in voter_client.get(url).content


def test_a_vote_is_decided_on_the_poll_as_it_is_not_on_a_kept_copy(voter_client, question) -> None:
    voter_client.get(reverse("polls:detail", args=[question.pk]))  # kept: open
    Question.objects.filter(pk=question.pk).update(closes_at=timezone.now() - timedelta(seconds=1))

    response = voter_client.post(
        reverse("polls:vote", args=[question.pk]),
        {"choice": question.choices.first().pk},
        follow=True,
    )

    assert b"This poll is closed" in response.content
    assert not Vote.objects.exists()


def test_a_poll_published_meanwhile_is_found_within_ballot_seconds(
    voter_client, make_question, later
) -> None:
    future = make_question(published_ago=timedelta(minutes=-5))
    url = reverse("polls:detail", args=[future.pk])
    assert voter_client.get(url).status_code == 404
    Question.objects.filter(pk=future.pk).update(pub_date=timezone.now() - timedelta(seconds=1))

    later()
    assert voter_client.get(url).status_code == 200


def test_a_process_keeps_a_bounded_number_of_polls(make_question, monkeypatch) -> None:
    monkeypatch.setattr(ballots, "_MAX_BALLOTS", 3)
    made = [make_question(text=f"Poll {n}") for n in range(5)]
    for question in made:
        assert ballots.ballot_of(question.pk).question.text == question.text
    assert len(ballots._kept) == 3
    assert set(ballots._kept) == {question.pk for question in made[2:]}
