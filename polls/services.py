"""Voting rules. Views translate HTTP into these calls; nothing else writes votes."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from polls.live import results_publish
from polls.models import Choice, Question, Vote


class VoteRefused(Exception):
    """A vote that cannot be cast; the message is shown to the voter."""


class InvalidChoice(VoteRefused):
    pass


class AlreadyVoted(VoteRefused):
    pass


class PollClosed(VoteRefused):
    pass


def vote_cast(*, user: AbstractBaseUser, question: Question, choice_id: object) -> Vote:
    if question.is_closed or not question.is_published:
        raise PollClosed("This poll is closed; you can still see its results.")
    try:
        choice = question.choices.get(pk=int(str(choice_id)))
    except (ValueError, TypeError, Choice.DoesNotExist):
        raise InvalidChoice("Please pick one of the choices below.") from None
    try:
        # The unique constraint, not a prior SELECT, decides a race between two votes.
        with transaction.atomic():
            vote = Vote.objects.create(user=user, question=question, choice=choice)
    except IntegrityError:
        raise AlreadyVoted("You have already voted on this poll. Here are the results.") from None
    transaction.on_commit(lambda: results_publish(question_id=question.pk))
    return vote
