from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.contrib.auth.signals import user_logged_in
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.apps import last_login_stamp
from tests.conftest import PASSWORD
from tests.two_factor.verifications import mark_session_verified
from two_factor.protection import NEXT_SESSION_KEY

HOSTILE_NEXT = [
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "\\\\evil.example",
    "/\\evil.example",
    "https://testserver@evil.example/",
    " //evil.example",
    "\t//evil.example",
    "data:text/html,<script>alert(1)</script>",
]


def test_signup_creates_the_account_and_logs_in(client, db):
    response = client.post(
        reverse("signup"),
        {
            "username": "carol",
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")
    assert int(client.session["_auth_user_id"]) == get_user_model().objects.get(username="carol").pk


def test_signup_uses_django_password_validators(client, db):
    response = client.post(
        reverse("signup"), {"username": "carol", "password1": "123", "password2": "123"}
    )
    assert response.status_code == 200
    assert "password2" in response.context["form"].errors
    assert not get_user_model().objects.filter(username="carol").exists()


def test_production_settings_hash_passwords_with_argon2():
    env = {k: v for k, v in os.environ.items() if k != "FAST_PASSWORD_HASHER"}
    code = "from django.conf import settings; print(settings.PASSWORD_HASHERS[0])"
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); " + code],
        env={**env, "DJANGO_SETTINGS_MODULE": "pollstr.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "django.contrib.auth.hashers.Argon2PasswordHasher"


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/polls/", "/polls/"),
        # A new account's session is not verified: the poll would only send it on to the
        # number page, so the sign-up does, the poll kept as where to come back to.
        ("/polls/1/", "/2fa/?next=%2Fpolls%2F1%2F"),
    ],
)
def test_signup_follows_a_safe_next(client, db, next_url, location):
    response = client.post(
        reverse("signup") + f"?next={next_url}",
        {
            "username": "dave",
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
        },
    )
    assert response["Location"] == location


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_signup_ignores_an_unsafe_next(client, db, hostile):
    response = client.post(
        reverse("signup"),
        {
            "username": "erin",
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
            "next": hostile,
        },
    )
    assert response["Location"] == reverse("polls:index")


def test_a_sign_in_stamps_last_login_with_one_update(client, user):
    before = user.last_login
    with CaptureQueriesContext(connection) as queries:
        response = client.post(reverse("login"), {"username": user.username, "password": PASSWORD})

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.last_login is not None
    assert user.last_login != before
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len([sql for sql in updates if '"auth_user"' in sql]) == 1
    assert '"last_login"' in updates[0]
    assert '"password"' not in updates[0]
    # The compiled stamp in place of Django's receiver, not beside it.
    sync_receivers, _async = user_logged_in._live_receivers(type(user))
    assert last_login_stamp in sync_receivers
    assert update_last_login not in sync_receivers


@pytest.mark.parametrize("hostile", HOSTILE_NEXT)
def test_login_ignores_an_unsafe_next(client, user, hostile):
    response = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": hostile}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:index")


def test_login_with_a_wrong_password_shows_an_error(client, user):
    response = client.post(reverse("login"), {"username": user.username, "password": "nope"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert "_auth_user_id" not in client.session


def test_logout_is_post_only_and_ends_the_session(logged_in_client):
    assert logged_in_client.get(reverse("logout")).status_code == 405
    response = logged_in_client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in logged_in_client.session


def test_password_change_keeps_the_user_logged_in(logged_in_client, user):
    response = logged_in_client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "another-long-pass-2",
            "new_password2": "another-long-pass-2",
        },
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("another-long-pass-2")
    assert int(logged_in_client.session["_auth_user_id"]) == user.pk


def test_nav_shows_who_is_logged_in(logged_in_client, user):
    response = logged_in_client.get(reverse("polls:index"))
    assert f"Signed in as <strong>{user.username}</strong>".encode() in response.content


# --- sign-in throttling ---------------------------------------------------------------------


@pytest.fixture
def tight_login_limits(settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "login_failures_per_username": (3, 900),
        "login_failures_per_ip": (5, 900),
    }
    from django.core.cache import cache

    cache.clear()


def _login(client, username, password, ip="192.0.2.10"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def test_wrong_passwords_for_one_username_are_throttled_then_even_the_right_one_waits(
    client, user, tight_login_limits, monkeypatch
):
    from django.contrib.auth import backends

    for _ in range(3):
        assert _login(client, user.username, "wrong").status_code == 200
    checked: list[str] = []
    original = backends.ModelBackend.authenticate

    def spy(self, request, username=None, password=None, **kwargs):
        checked.append(password)
        return original(self, request, username=username, password=password, **kwargs)

    monkeypatch.setattr(backends.ModelBackend, "authenticate", spy)

    refused = _login(client, user.username, PASSWORD)

    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert b"Too many sign-in attempts. Try again in" in refused.content
    assert checked == []  # the password was not even evaluated
    assert "_auth_user_id" not in client.session


def test_the_username_throttle_ignores_case_and_spaces(client, user, tight_login_limits):
    for variant in ["Alice", " alice", "ALICE"]:
        _login(client, variant, "wrong")
    assert _login(client, user.username, PASSWORD).status_code == 429


def test_one_address_guessing_many_usernames_is_throttled(client, user, tight_login_limits):
    for index in range(5):
        _login(client, f"nobody{index}", "wrong")

    assert _login(client, user.username, PASSWORD).status_code == 429
    # Another address is not held back by it.
    assert _login(Client(), user.username, PASSWORD, ip="198.51.100.7").status_code == 302


def test_successful_sign_ins_are_not_counted(client, user, tight_login_limits):
    for _ in range(6):
        assert _login(Client(), user.username, PASSWORD).status_code == 302


def test_a_sign_in_for_a_poll_goes_where_the_poll_would_send_it(client, user, question):
    """One request less a voter: the sign-in answers with the number page the poll would
    redirect an unverified session to; the number page then shows, and the poll is where
    the verification comes back to."""
    poll = reverse("polls:detail", args=[question.pk])
    response = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": poll}
    )

    assert response.status_code == 302
    assert response["Location"] == client.get(poll)["Location"]  # the poll's own answer
    assert response["Location"] == f"{reverse('two_factor:start')}?next=%2Fpolls%2F{question.pk}%2F"
    number_page = client.get(response["Location"])
    assert number_page.status_code == 200
    assert 'name="number"' in number_page.content.decode()


def test_the_sign_in_keeps_the_poll_so_the_number_page_writes_no_session(client, user, question):
    """The number page would keep its `next` in the session; the sign-in, which writes the
    session anyway, already kept it: the page's GET writes nothing (a session write is an
    UPDATE and a cache write). Another `next` is still kept."""
    poll = reverse("polls:detail", args=[question.pk])
    number_page = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": poll}
    )["Location"]
    assert client.session[NEXT_SESSION_KEY] == poll

    with CaptureQueriesContext(connection) as queries:
        assert client.get(number_page).status_code == 200
    assert not [q["sql"] for q in queries if "django_session" in q["sql"]]

    other = reverse("polls:results", args=[question.pk])
    with CaptureQueriesContext(connection) as queries:
        client.get(reverse("two_factor:start"), {"next": other})
    assert [q["sql"] for q in queries if "django_session" in q["sql"]]
    assert client.session[NEXT_SESSION_KEY] == other


def test_a_sign_in_for_an_open_page_or_a_verified_session_goes_to_it(
    client, user, question, settings
):
    open_page = reverse("polls:index")
    response = client.post(
        reverse("login"), {"username": user.username, "password": PASSWORD, "next": open_page}
    )
    assert response["Location"] == open_page

    mark_session_verified(client, user)
    poll = reverse("polls:detail", args=[question.pk])
    # Signed in already (redirect_authenticated_user): a verified session goes to the poll.
    response = client.get(reverse("login") + f"?next={poll}")
    assert response.status_code == 302
    assert response["Location"] == poll
    assert client.get(poll).status_code == 200
