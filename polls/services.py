"""Voting rules. Views translate HTTP into these calls; nothing else writes votes."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from polls.live import results_publish
from polls.models import Choice, Question, Vote
from two_factor.models import PhoneNumber
from two_factor.numbers import number_hash


class VoteRefused(Exception):
    """A vote that cannot be cast; the message is shown to the voter."""


class InvalidChoice(VoteRefused):
    pass


class AlreadyVoted(VoteRefused):
    pass


class PollClosed(VoteRefused):
    pass


class PhoneAlreadyVoted(AlreadyVoted):
    pass


class PhoneNotVerified(VoteRefused):
    pass


def vote_cast(*, user: User, question: Question, choice_id: object) -> Vote:
    """One vote per account and per verified phone on each question."""
    if question.is_closed or not question.is_published:
        raise PollClosed("This poll is closed; you can still see its results.")
    try:
        choice = question.choices.get(pk=int(str(choice_id)))
    except (ValueError, TypeError, OverflowError, Choice.DoesNotExist):
        raise InvalidChoice("Please pick one of the choices below.") from None
    phone = PhoneNumber.objects.filter(user=user, verified_at__isnull=False).first()
    if phone is None:
        raise PhoneNotVerified("Verify your phone number to vote.")
    try:
        # The unique constraints, not a prior SELECT, decide a race between two votes.
        with transaction.atomic():
            vote = Vote.objects.create(
                user=user, question=question, choice=choice, phone_hash=number_hash(phone.number)
            )
    except IntegrityError:
        if Vote.objects.filter(user=user, question=question).exists():
            raise AlreadyVoted(
                "You have already voted on this poll. Here are the results."
            ) from None
        raise PhoneAlreadyVoted(
            "Your phone number has already voted on this poll (from another account). "
            "Here are the results."
        ) from None
    transaction.on_commit(lambda: results_publish(question_id=question.pk))
    return vote
