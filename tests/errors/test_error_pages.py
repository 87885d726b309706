"""Every failed request gets the site's page: the header, a sentence, a way back."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from tests.two_factor.verifications import create_verification
from two_factor.models import Status

pytestmark = pytest.mark.urls("tests.errors.urls")

BRAND = 'class="brand"'


def _is_branded(response, title: str) -> None:
    content = response.content.decode()
    assert BRAND in content, content[:300]
    assert f"<h1>{title}</h1>" in content
    assert f'href="{reverse("polls:index")}"' in content  # a way back


@pytest.mark.parametrize(
    ("path", "status", "title"),
    [
        ("/no/such/page/", 404, "Page not found"),
        ("/fail/400/", 400, "That request didn&#x27;t make sense"),
        ("/fail/403/", 403, "You can&#x27;t open this page"),
        ("/fail/429/", 429, "Too many attempts"),
        ("/fail/500/", 500, "Something went wrong on our side"),
    ],
)
def test_an_error_keeps_the_site_header_and_offers_a_way_back(db, path, status, title):
    response = Client(raise_request_exception=False).get(path)

    assert response.status_code == status
    _is_branded(response, title)


def test_a_refused_csrf_token_gets_the_sites_page(db):
    client = Client(enforce_csrf_checks=True)

    response = client.post(reverse("login"), {"username": "a", "password": "b"})

    assert response.status_code == 403
    _is_branded(response, "This form has expired")


def test_the_rate_limit_page_says_how_long_to_wait(db):
    response = Client().get("/fail/429/")

    assert response["Retry-After"] == "120"
    assert b"Please wait 2 minutes, then try again." in response.content


def test_the_500_page_claims_nobody_is_signed_in_or_out(logged_in_client):
    client = logged_in_client
    client.raise_request_exception = False

    content = client.get("/fail/500/").content.decode()

    assert "Signed in as" not in content
    assert "Log in" not in content


def test_the_page_not_found_offers_the_page_you_came_from(logged_in_client):
    response = logged_in_client.get("/no/such/page/", HTTP_REFERER="http://testserver/polls/")

    assert re.search(
        r'href="http://testserver/polls/"[^>]*>Back to the previous page', response.content.decode()
    )


def test_a_referer_on_another_site_is_not_offered(logged_in_client):
    response = logged_in_client.get("/no/such/page/", HTTP_REFERER="https://evil.example/")

    assert b"evil.example" not in response.content


# --- Back after verifying and voting (issue 17, rough edge 1) -------------------------------
# Completing a verification rotates the session key, so the code page the browser goes
# back to is no longer this session's: its view answers 404.


@pytest.mark.parametrize("status", [Status.CONSUMED, Status.VERIFIED])
def test_back_to_a_used_code_page_says_it_has_closed(logged_in_client, user, status):
    verification = create_verification(
        user=user, status=status, session_key="the-session-before-rotation"
    )

    response = logged_in_client.get(reverse("two_factor:verify", args=[verification.pk]))

    assert response.status_code == 404
    _is_branded(response, "This code page has closed")
    assert b"You already verified your phone" in response.content


def test_back_to_an_ended_code_page_says_ask_for_a_new_code(logged_in_client, user):
    verification = create_verification(user=user, status=Status.EXPIRED, session_key="old")

    response = logged_in_client.get(reverse("two_factor:verify", args=[verification.pk]))

    _is_branded(response, "This code request has ended")


def test_someone_elses_code_page_is_only_not_found(logged_in_client, make_user):
    other = create_verification(user=make_user("bob"), status=Status.CONSUMED)

    response = logged_in_client.get(reverse("two_factor:verify", args=[other.pk]))

    _is_branded(response, "Page not found")


def test_an_anonymous_visitor_keeps_the_log_in_link(client, db):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert f'href="{reverse("login")}"'.encode() in response.content


def test_a_refused_form_offers_to_go_back_to_it(db):
    client = Client(enforce_csrf_checks=True)
    login = f"http://testserver{reverse('login')}"

    response = client.post(reverse("login"), {"username": "a"}, HTTP_REFERER=login)

    assert f'href="{login}"' in response.content.decode()


def test_a_page_is_not_offered_as_the_way_back_to_itself(db):
    here = "http://testserver/no/such/page/"

    response = Client().get("/no/such/page/", HTTP_REFERER=here)

    assert b"Back to the previous page" not in response.content
