"""Refusals a voter meets in ordinary use answer with a sentence on the page, never 500."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from pollstr.safe_redirect import safe_next_url
from tests.conftest import PASSWORD
from tests.two_factor.verifications import client_session_key
from two_factor.models import Status, Verification

BARE_WORDS = ["foo", "polls:index", "polls/1/", "two_factor:start", "?next=/x/", "#top"]


@pytest.fixture
def strict_client(logged_in_client: Client) -> Client:
    # A 500 must come back as a response to assert on, not as a raised exception.
    logged_in_client.raise_request_exception = False
    return logged_in_client


@pytest.mark.django_db
def test_a_second_text_me_a_code_within_the_cooldown_says_when_to_ask_again(
    two_factor_settings, strict_client, user, phone
):
    first = strict_client.post(reverse("two_factor:start"))
    second = strict_client.post(reverse("two_factor:start"))

    assert first.status_code == 302
    assert second.status_code == 429
    assert int(second["Retry-After"]) > 0
    assert b"You can ask for a new one in" in second.content
    # The page still offers the way back to the code on its way.
    live = Verification.objects.get(user=user)
    assert reverse("two_factor:verify", args=[live.pk]).encode() in second.content


@pytest.mark.django_db
def test_a_rate_limited_text_me_a_code_renders_on_the_form(
    two_factor_settings, strict_client, user, phone
):
    two_factor_settings.TWO_FACTOR_RATE_LIMITS = {
        **two_factor_settings.TWO_FACTOR_RATE_LIMITS,
        "start_per_user": (1, 3600),
    }
    two_factor_settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    strict_client.post(reverse("two_factor:start"))
    Verification.objects.update(status=Status.CANCELLED)

    refused = strict_client.post(reverse("two_factor:start"))

    assert refused.status_code == 429
    assert b"Too many attempts. Try again in" in refused.content
    assert b'role="alert"' in refused.content


@pytest.mark.django_db
def test_a_refused_new_number_is_an_error_on_the_number_field(
    two_factor_settings, strict_client, user
):
    refused = strict_client.post(reverse("two_factor:start"), {"number": "+1 900 555 0199"})

    assert refused.status_code == 400
    assert refused.context["form"].errors["number"]


@pytest.mark.parametrize("word", BARE_WORDS)
def test_a_bare_word_is_never_a_next_url(rf: RequestFactory, word: str):
    assert safe_next_url(rf.get("/"), word, "/fallback/") == "/fallback/"


@pytest.mark.parametrize("url", ["/polls/1/", "/polls/?page=2", "http://testserver/polls/"])
def test_a_url_into_this_site_is_a_next_url(rf: RequestFactory, url: str):
    assert safe_next_url(rf.get("/"), url, "/fallback/") == url


@pytest.mark.django_db
@pytest.mark.parametrize("word", BARE_WORDS)
def test_login_with_a_bare_word_next_goes_to_the_polls(client, user, word):
    client.raise_request_exception = False
    response = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": word}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")


@pytest.mark.django_db
@pytest.mark.parametrize("word", BARE_WORDS)
def test_completion_with_a_bare_word_next_goes_on_and_keeps_the_voter_signed_in(
    two_factor_settings, strict_client, user, phone, make_verification, word
):
    strict_client.get(reverse("two_factor:start"), {"next": word})
    verified = make_verification(
        Status.VERIFIED,
        session_key=client_session_key(strict_client),
        request_id="req-1",
        verified_at=timezone.now() - timedelta(seconds=1),
    )
    phone.verified_at = timezone.now()
    phone.save()

    response = strict_client.get(reverse("two_factor:complete", args=[verified.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")
    assert strict_client.get(reverse("polls:index")).context["user"] == user
