"""Your data: the account page, "Download my data" (JSON, only yours) and "Delete my
account" (erases the account and number, keeps each vote's phone hash)."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from polls.models import Vote
from polls.services import PhoneAlreadyVoted, vote_cast
from tests.conftest import PASSWORD
from tests.phone_numbers import NUMBER, OTHER_NUMBER, give_phone
from tests.two_factor.verifications import create_verification, mark_session_verified
from two_factor.models import PhoneNumber, ProviderCallback, Status, Verification, VerificationEvent


@pytest.fixture
def voter(user, question):
    """`user` with a verified number, a finished verification and a vote for vim."""
    give_phone(user, NUMBER)
    verification = create_verification(user=user, status=Status.CONSUMED, number=NUMBER)
    VerificationEvent.objects.create(
        verification=verification, from_status="verified", to_status="consumed", ip="192.0.2.7"
    )
    ProviderCallback.objects.create(
        token_id="t-voter",
        request_id="r-voter",
        verification=verification,
        type="summary",
        status="completed",
        body={},
    )
    vote_cast(user=user, question=question, choice_id=question.choices.get(text="vim").pk)
    return user


@pytest.fixture
def someone_else(make_user, question):
    """Another voter in the same poll, with their own number and verification."""
    other = make_user("bob")
    give_phone(other, OTHER_NUMBER)
    create_verification(user=other, status=Status.CONSUMED, number=OTHER_NUMBER)
    vote_cast(user=other, question=question, choice_id=question.choices.get(text="emacs").pk)
    return other


def _download(client, password=PASSWORD):
    return client.post(reverse("account_data"), {"password": password})


def _delete(client, password=PASSWORD):
    return client.post(reverse("account_delete"), {"password": password})


def test_the_account_page_offers_the_download_and_the_deletion(logged_in_client, user):
    response = logged_in_client.get(reverse("account"))

    assert response.status_code == 200
    assert reverse("account_data").encode() in response.content
    assert reverse("account_delete").encode() in response.content
    assert b"Download my data" in response.content
    assert b"Delete my account" in response.content


@pytest.mark.parametrize("name", ["account", "account_data", "account_delete"])
def test_the_account_pages_need_a_login(client, db, name):
    response = client.get(reverse(name))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_the_download_is_json_with_the_voters_own_data(logged_in_client, voter, someone_else):
    response = _download(logged_in_client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="pollstr-my-data-')
    data = json.loads(response.content)
    assert data["account"]["username"] == "alice"
    assert data["phone_number"]["number"] == NUMBER
    assert data["phone_number"]["masked"].endswith("3456")
    assert "•" in data["phone_number"]["masked"]
    [verification] = data["verifications"]
    assert verification["number"] == NUMBER
    assert [e["to_status"] for e in verification["timeline"]] == ["consumed", "consumed"]
    assert verification["timeline"][1]["ip"] == "192.0.2.7"
    assert data["votes"] == [
        {
            "poll_id": data["votes"][0]["poll_id"],
            "poll": "Best editor?",
            "choice": "vim",
            "cast_at": data["votes"][0]["cast_at"],
        }
    ]
    text = response.content.decode()
    assert "bob" not in text
    assert OTHER_NUMBER not in text
    assert "emacs" not in text


def test_the_download_leaves_out_a_vote_the_same_phone_cast_from_another_account(
    client, make_user, question
):
    first, second = make_user("first"), make_user("second")
    give_phone(first, NUMBER)
    vote_cast(user=first, question=question, choice_id=question.choices.first().pk)
    PhoneNumber.objects.filter(user=first).delete()
    give_phone(second, NUMBER)
    client.force_login(second)

    data = json.loads(_download(client).content)

    assert data["votes"] == []


def test_a_wrong_password_downloads_nothing(logged_in_client, voter):
    response = _download(logged_in_client, password="not-my-password")

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"That isn&#x27;t your password" in response.content


def test_deleting_erases_the_account_number_and_verifications_but_keeps_the_vote(
    logged_in_client, voter, someone_else, question
):
    vote = Vote.objects.get(user=voter)

    response = _delete(logged_in_client)

    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")
    assert not get_user_model().objects.filter(username="alice").exists()
    assert not PhoneNumber.objects.filter(number=NUMBER).exists()
    assert not Verification.objects.filter(number=NUMBER).exists()
    assert not VerificationEvent.objects.filter(ip="192.0.2.7").exists()
    assert not ProviderCallback.objects.filter(token_id="t-voter").exists()
    kept = Vote.objects.get(pk=vote.pk)
    assert kept.user is None
    assert (kept.phone_hash, kept.choice.text) == (vote.phone_hash, "vim")
    assert {c.text: c.votes for c in question.results()["choices"]} == {"vim": 1, "emacs": 1}
    # Someone else's data is untouched.
    assert Verification.objects.filter(user=someone_else).count() == 1
    assert "_auth_user_id" not in logged_in_client.session


def test_a_deleted_accounts_phone_signed_up_again_cannot_vote_again_in_that_poll(
    logged_in_client, voter, make_user, question
):
    _delete(logged_in_client)
    again = make_user("alice-again")
    client = Client()
    client.force_login(again)
    mark_session_verified(client, again, number=NUMBER)

    with pytest.raises(PhoneAlreadyVoted):
        vote_cast(user=again, question=question, choice_id=question.choices.first().pk)
    page = client.get(reverse("polls:detail", args=[question.pk]))
    assert b"Your phone number has already voted in this poll" in page.content
    assert Vote.objects.filter(question=question).count() == 1


def test_a_wrong_password_deletes_nothing(logged_in_client, voter):
    response = _delete(logged_in_client, password="not-my-password")

    assert response.status_code == 400
    assert get_user_model().objects.filter(pk=voter.pk).exists()
    assert PhoneNumber.objects.filter(user=voter).exists()


def test_deleting_cancels_a_code_still_on_its_way(logged_in_client, user, monkeypatch):
    give_phone(user, NUMBER)
    live = create_verification(user=user, status=Status.SENT, request_id="req-live")
    cancelled = []
    real_cancel = account_services.two_factor_services.verification_cancel

    def spy(*, verification, ip):
        cancelled.append((verification.pk, verification.status))
        real_cancel(verification=verification, ip=ip)

    monkeypatch.setattr(account_services.two_factor_services, "verification_cancel", spy)

    _delete(logged_in_client)

    assert cancelled == [(live.pk, Status.SENT)]
    assert not Verification.objects.filter(pk=live.pk).exists()


def test_wrong_passwords_here_count_against_the_sign_in_limit(logged_in_client, user, settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "login_failures_per_username": (3, 900),
    }
    cache.clear()
    for _ in range(3):
        assert _delete(logged_in_client, password="guess").status_code == 400

    refused = _delete(logged_in_client)  # even the right password waits now

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert b"Too many wrong passwords" in refused.content
    assert get_user_model().objects.filter(pk=user.pk).exists()
    cache.clear()


def test_the_forms_refuse_a_post_without_a_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(reverse("account_delete"), {"password": PASSWORD})

    assert response.status_code == 403
    assert get_user_model().objects.filter(pk=user.pk).exists()


def test_an_operator_can_erase_an_account_by_name(voter, question):
    call_command("erase_account", "alice")

    assert not get_user_model().objects.filter(username="alice").exists()
    assert Vote.objects.get(question=question).user is None


def test_erasing_an_unknown_account_says_so(db):
    with pytest.raises(CommandError, match="No account is called 'nobody'"):
        call_command("erase_account", "nobody")


def test_a_post_without_a_password_asks_for_it(logged_in_client, user):
    response = logged_in_client.post(reverse("account_delete"), {})

    assert response.status_code == 400
    assert b"This field is required" in response.content
    assert get_user_model().objects.filter(pk=user.pk).exists()
