from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.conftest import PASSWORD

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


def test_signup_follows_a_safe_next(client, db):
    response = client.post(
        reverse("signup") + "?next=/polls/1/",
        {
            "username": "dave",
            "password1": "a-long-passphrase-1",
            "password2": "a-long-passphrase-1",
        },
    )
    assert response["Location"] == "/polls/1/"


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
