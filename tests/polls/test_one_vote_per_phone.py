"""One vote per phone per poll, not only per account: a vote records a keyed hash of
the verified number that cast it, and the database refuses a second one (the keys:
test_vote_hash_keys.py)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from polls.models import Vote
from polls.phone_hashes import phone_hash_current
from polls.services import PhoneAlreadyVoted, PhoneNotVerified, vote_cast
from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import mark_session_verified
from two_factor.models import PhoneNumber


def _choice(question):
    return question.choices.first().pk


def test_a_vote_stores_a_keyed_hash_of_the_number_never_the_number(voter_client, question, user):
    voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": _choice(question)})

    vote = Vote.objects.get(user=user)
    phone = PhoneNumber.objects.get(user=user)
    assert vote.phone_hash == phone_hash_current(phone.number).value
    assert phone.number.as_e164.lstrip("+") not in vote.phone_hash


def test_a_number_moved_to_a_second_account_cannot_vote_again(question, make_user):
    first, second = make_user("first"), make_user("second")
    phone = PhoneNumber.objects.create(user=first, number=NUMBER, verified_at=timezone.now())
    vote_cast(user=first, question=question, choice_id=_choice(question))
    # The phone's holder proves it on a second account: the number moves there.
    phone.delete()
    PhoneNumber.objects.create(user=second, number=NUMBER, verified_at=timezone.now())

    with pytest.raises(PhoneAlreadyVoted, match="already voted on this poll"):
        vote_cast(user=second, question=question, choice_id=_choice(question))

    assert Vote.objects.filter(question=question).count() == 1
    assert question.results()["choices"][0].votes + question.results()["choices"][1].votes == 1


def test_through_the_page_the_second_account_gets_a_sentence_not_a_500(question, make_user):
    first, second = make_user("first"), make_user("second")
    first_client, second_client = Client(), Client(raise_request_exception=False)
    first_client.force_login(first)
    mark_session_verified(first_client, first, number=NUMBER)
    first_client.post(reverse("polls:vote", args=[question.pk]), {"choice": _choice(question)})
    PhoneNumber.objects.filter(user=first).delete()
    second_client.force_login(second)
    mark_session_verified(second_client, second, number=NUMBER)

    response = second_client.post(
        reverse("polls:vote", args=[question.pk]), {"choice": _choice(question)}, follow=True
    )

    assert response.status_code == 200
    assert b"Your phone number has already voted on this poll" in response.content
    assert Vote.objects.filter(question=question).count() == 1


def test_the_same_phone_may_vote_in_another_poll(question, make_question, make_user):
    voter = make_user("voter")
    PhoneNumber.objects.create(user=voter, number=NUMBER, verified_at=timezone.now())
    other = make_question(text="Tabs or spaces?", choices=("tabs", "spaces"))

    vote_cast(user=voter, question=question, choice_id=_choice(question))
    vote_cast(user=voter, question=other, choice_id=_choice(other))

    assert Vote.objects.filter(user=voter).count() == 2


def test_an_account_without_a_verified_number_cannot_vote(question, make_user):
    voter = make_user("voter")
    PhoneNumber.objects.create(user=voter, number=NUMBER, verified_at=None)

    with pytest.raises(PhoneNotVerified):
        vote_cast(user=voter, question=question, choice_id=_choice(question))


def test_the_database_refuses_a_second_vote_for_one_phone(question, make_user):
    first, second = make_user("first"), make_user("second")
    choice = question.choices.first()
    Vote.objects.create(user=first, question=question, choice=choice, phone_hash="h" * 64)

    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(user=second, question=question, choice=choice, phone_hash="h" * 64)
