"""A poll you (or your phone) voted in says so, instead of offering a ballot you can't use."""

from __future__ import annotations

from django.test import Client
from django.urls import reverse

from polls.phone_hashes import phone_hashes_all
from polls.services import vote_cast
from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import mark_session_verified
from two_factor.models import PhoneNumber

VOTE_FORM = b'name="choice"'


def _vote(user, question, text="emacs"):
    return vote_cast(user=user, question=question, choice_id=question.choices.get(text=text).pk)


def test_a_poll_you_voted_in_shows_your_choice_and_the_results_link_not_a_ballot(
    voter_client, user, question
):
    _vote(user, question)

    response = voter_client.get(reverse("polls:detail", args=[question.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert "You voted for <strong>emacs</strong>" in content
    assert VOTE_FORM.decode() not in content
    assert reverse("polls:results", args=[question.pk]) in content


def test_a_poll_you_have_not_voted_in_still_offers_the_ballot(voter_client, user, question):
    response = voter_client.get(reverse("polls:detail", args=[question.pk]))

    assert VOTE_FORM in response.content
    assert b"You voted" not in response.content


def test_a_poll_your_phone_voted_in_from_another_account_says_so_without_that_choice(
    question, make_user
):
    first, second = make_user("first"), make_user("second")
    client = Client()
    client.force_login(first)
    mark_session_verified(client, first, number=NUMBER)
    _vote(first, question)
    PhoneNumber.objects.filter(user=first).delete()
    client.force_login(second)
    mark_session_verified(client, second, number=NUMBER)

    response = client.get(reverse("polls:detail", args=[question.pk]))

    assert b"Your phone number has already voted in this poll" in response.content
    assert b"emacs" not in response.content  # the other account's choice stays its own
    assert VOTE_FORM not in response.content


def test_the_results_page_says_how_you_voted(voter_client, user, question):
    _vote(user, question, text="vim")

    response = voter_client.get(reverse("polls:results", args=[question.pk]))

    assert b"You voted for <strong>vim</strong>" in response.content
    assert b"Vote on this poll" not in response.content


def test_the_poll_page_reads_the_phone_once_and_compiles_no_query(voter_client, user, question):
    """The page's reads are prepared statements (pollstr/db/prepared.py): the user, the
    phone (once, for the verified-session check and the vote lookup), the question, the
    account's vote, the phone's vote under each hash key, the choices."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    url = reverse("polls:detail", args=[question.pk])
    voter_client.get(url)  # the prepared statements are compiled at first use
    with CaptureQueriesContext(connection) as captured:
        response = voter_client.get(url)

    assert VOTE_FORM in response.content
    statements = [query["sql"] for query in captured.captured_queries]
    phone_reads = [sql for sql in statements if 'FROM "two_factor_phonenumber"' in sql]
    assert len(phone_reads) == 1, statements
    vote_reads = [sql for sql in statements if 'FROM "polls_vote"' in sql]
    # One read by account, one per hash the phone's vote may be stored under: no OR, no
    # IN list, each matching one row at most.
    hashes = phone_hashes_all(user.phone_number.number)
    assert len(vote_reads) == 1 + len(hashes), statements
    assert not any(" OR " in sql or " IN (" in sql for sql in vote_reads), vote_reads
