"""The per-session verified flag: bound to its user, their password, their number, an age."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.urls import reverse

from tests.conftest import PASSWORD
from tests.phone_numbers import NUMBER, OTHER_NUMBER, give_phone
from tests.two_factor.verifications import mark_session_verified
from two_factor.models import PhoneNumber
from two_factor.session import (
    SESSION_KEY,
    session_is_verified,
    session_unverify,
    session_verified_until,
    session_verify,
)

pytestmark = pytest.mark.usefixtures("two_factor_settings")


@pytest.fixture
def verified_phone(user) -> PhoneNumber:
    return give_phone(user, NUMBER, verified=True)


@pytest.fixture
def session(user, verified_phone) -> SessionStore:
    """A session carrying a fresh flag for `user`."""
    store = SessionStore()
    session_verify(session=store, user=user, number=verified_phone.number)
    store.save()
    return store


def _fresh(user):
    # The flag is checked against the stored user and number, never a cached copy.
    return type(user).objects.get(pk=user.pk)


def test_a_fresh_flag_verifies_the_session(session, user):
    assert session_is_verified(session=session, user=_fresh(user))


def test_a_session_without_the_flag_is_not_verified(user, verified_phone):
    assert not session_is_verified(session=SessionStore(), user=user)


def test_an_anonymous_user_is_never_verified(session):
    assert not session_is_verified(session=session, user=AnonymousUser())


def test_a_flag_issued_for_another_user_does_not_verify_this_one(session, make_user):
    other = make_user("bob")
    give_phone(other, OTHER_NUMBER, verified=True)

    assert not session_is_verified(session=session, user=_fresh(other))


def test_a_password_change_ends_the_flag(session, user):
    user.set_password("a-brand-new-passphrase")
    user.save()

    assert not session_is_verified(session=session, user=_fresh(user))


def test_a_changed_number_ends_the_flag(session, user, verified_phone):
    # Even a number marked verified: the flag names the number it was issued for.
    PhoneNumber.objects.filter(pk=verified_phone.pk).update(number=OTHER_NUMBER)

    assert not session_is_verified(session=session, user=_fresh(user))


def test_a_number_no_longer_verified_ends_the_flag(session, user, verified_phone):
    PhoneNumber.objects.filter(pk=verified_phone.pk).update(verified_at=None)

    assert not session_is_verified(session=session, user=_fresh(user))


def test_a_deleted_number_ends_the_flag(session, user, verified_phone):
    verified_phone.delete()

    assert not session_is_verified(session=session, user=_fresh(user))


def test_the_flag_lasts_just_under_its_maximum_age(session, user, settings, clock):
    settings.TWO_FACTOR_VERIFIED_MAX_AGE = 600
    issued = session[SESSION_KEY]["at"]

    clock.travel_to(issued + 599)
    assert session_is_verified(session=session, user=_fresh(user))

    clock.advance(1)
    assert not session_is_verified(session=session, user=_fresh(user))


def test_a_shorter_maximum_age_ends_existing_flags(session, user, settings, clock):
    clock.travel_to(session[SESSION_KEY]["at"] + 120)
    assert session_is_verified(session=session, user=_fresh(user))

    settings.TWO_FACTOR_VERIFIED_MAX_AGE = 60

    assert not session_is_verified(session=session, user=_fresh(user))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda flag: True,
        lambda flag: "yes",
        lambda flag: [flag],
        lambda flag: {},
        lambda flag: {**flag, "at": "yesterday"},
        lambda flag: {**flag, "at": None},
        lambda flag: {**flag, "user_id": None},
        lambda flag: {**flag, "auth_hash": ""},
        lambda flag: {**flag, "phone_hash": ""},
        lambda flag: {key: value for key, value in flag.items() if key != "at"},
    ],
    ids=[
        "true",
        "string",
        "list",
        "empty",
        "bad-at",
        "no-at-value",
        "no-user",
        "no-auth-hash",
        "no-phone-hash",
        "missing-at",
    ],
)
def test_a_malformed_flag_does_not_verify(session, user, mangle):
    session[SESSION_KEY] = mangle(session[SESSION_KEY])

    assert not session_is_verified(session=session, user=_fresh(user))


def test_the_flag_holds_neither_the_number_nor_the_password_hash(session, user):
    stored = str(session[SESSION_KEY])

    assert NUMBER not in stored
    assert NUMBER.removeprefix("+") not in stored
    assert _fresh(user).password not in stored


def test_clearing_the_flag_unverifies_the_session(session, user):
    session_unverify(session=session)

    assert SESSION_KEY not in session
    assert not session_is_verified(session=session, user=_fresh(user))
    session_unverify(session=session)  # clearing twice is harmless


def test_the_flag_issued_now_uses_the_current_time(user, verified_phone, clock):
    clock.travel_to(1_000_000.0)
    store = SessionStore()

    session_verify(session=store, user=user, number=verified_phone.number)

    assert store[SESSION_KEY]["at"] == 1_000_000.0
    assert store[SESSION_KEY]["user_id"] == str(user.pk)


# --- login and logout end the flag (two_factor.signals) ------------------------------------


def test_logging_in_again_starts_unverified(voter_client, user):
    assert SESSION_KEY in voter_client.session

    voter_client.force_login(user)

    assert SESSION_KEY not in voter_client.session


def test_logging_in_with_the_password_starts_unverified(client, user):
    mark_session_verified(client, user)  # a flag left in an anonymous session

    client.post(reverse("login"), {"username": user.username, "password": PASSWORD})

    assert int(client.session["_auth_user_id"]) == user.pk
    assert SESSION_KEY not in client.session


def test_logging_out_ends_the_flag(voter_client):
    voter_client.post(reverse("logout"))

    assert SESSION_KEY not in voter_client.session


def test_the_page_context_says_whether_the_session_is_verified(voter_client, client, make_user):
    assert voter_client.get(reverse("polls:index")).context["two_factor_verified"] is True

    client.force_login(make_user("bob"))
    assert client.get(reverse("polls:index")).context["two_factor_verified"] is False


# --- the writer rotates the key; the predicate knows when the flag ends ---------------------


def test_verifying_gives_the_session_a_new_key(user, verified_phone):
    store = SessionStore()
    store["kept"] = "yes"
    store.save()
    before = store.session_key

    session_verify(session=store, user=user, number=verified_phone.number)

    assert store.session_key != before
    assert store["kept"] == "yes"
    assert not SessionStore().exists(before)


def test_the_flag_ends_its_maximum_age_after_it_was_issued(user, verified_phone, settings, clock):
    settings.TWO_FACTOR_VERIFIED_MAX_AGE = 600
    clock.travel_to(1_000_000.0)
    store = SessionStore()
    session_verify(session=store, user=user, number=verified_phone.number)

    assert session_verified_until(session=store, user=_fresh(user)) == 1_000_600.0


def test_a_flag_that_cannot_verify_the_user_has_no_end(session, user, make_user):
    other = make_user("bob")
    give_phone(other, OTHER_NUMBER, verified=True)

    assert session_verified_until(session=session, user=_fresh(other)) is None
    assert session_verified_until(session=session, user=AnonymousUser()) is None
    assert session_verified_until(session=SessionStore(), user=_fresh(user)) is None
