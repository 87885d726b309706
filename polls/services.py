"""Voting rules. Views translate HTTP into these calls; nothing else writes votes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

import phonenumbers
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from polls.live import results_publish
from polls.models import CHOICE_BY_ID, VOTE_OF_PHONE_HASH, VOTE_OF_USER, Choice, Question, Vote
from polls.phone_hashes import phone_hash_current, phone_hashes_all
from two_factor.models import phone_number_of


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
        raise PollClosed(gettext("This poll is closed; you can still see its results."))
    try:
        choice = question.choices.get(pk=int(str(choice_id)))
    except (ValueError, TypeError, OverflowError, Choice.DoesNotExist):
        raise InvalidChoice(gettext("Please pick one of the choices below.")) from None
    # The phone the verified-session check of this request read already, if it did.
    phone = phone_number_of(user)
    if phone is None or phone.verified_at is None:
        raise PhoneNotVerified(gettext("Verify your phone number to vote."))
    # A vote stored under an older key of VOTE_HASH_KEYS still counts; between two votes
    # under the newest key, the unique constraints, not this SELECT, decide a race.
    if _phone_vote(question=question, number=phone.number):
        _refuse_second_vote(user=user, question=question)
    current = phone_hash_current(phone.number)
    try:
        with transaction.atomic():
            vote = Vote.objects.create(
                user=user,
                question=question,
                choice=choice,
                phone_hash=current.value,
                phone_hash_version=current.version,
            )
    except IntegrityError:
        _refuse_second_vote(user=user, question=question)
    transaction.on_commit(lambda: results_publish(question_id=question.pk))
    return vote


def _phone_vote(*, question: Question, number: phonenumbers.PhoneNumber) -> Vote | None:
    return (
        question.votes.filter(phone_hash__in=phone_hashes_all(number))
        .select_related("choice")
        .order_by("cast_at")
        .first()
    )


def _refuse_second_vote(*, user: User, question: Question) -> NoReturn:
    if Vote.objects.filter(user=user, question=question).exists():
        raise AlreadyVoted(gettext("You have already voted on this poll. Here are the results."))
    raise PhoneAlreadyVoted(
        gettext(
            "Your phone number has already voted on this poll (from another account). "
            "Here are the results."
        )
    )


@dataclass(frozen=True)
class PastVote:
    """How the person asking already voted on a question. ``choice`` is None when their
    phone voted from another account: that account's choice is not theirs to see (the
    number may have been someone else's then)."""

    choice: Choice | None

    @property
    def from_this_account(self) -> bool:
        return self.choice is not None


def vote_find(*, user: User, question: Question) -> PastVote | None:
    """This account's vote on ``question``, else one its verified phone cast elsewhere."""
    # Prepared reads, each matching one row at most (the unique constraints on votes):
    # this account's vote, then the phone's under each hash key. The phone is the one
    # the verified-session check loaded already, when it did.
    own = VOTE_OF_USER.first(question.pk, user.pk)
    if own is not None:
        return PastVote(choice=CHOICE_BY_ID.get(own.choice_id))
    phone = phone_number_of(user)
    if phone is None or phone.verified_at is None:
        return None
    for phone_hash in phone_hashes_all(phone.number):
        if VOTE_OF_PHONE_HASH.first(question.pk, phone_hash) is not None:
            return PastVote(choice=None)
    return None
