"""accounts.backends.AccountBackend: signs in as Django's ModelBackend does, reads each
request's user with one prepared statement, keeps sessions signed in through Django's
own backend, and never checks a wrong password twice."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, User, UserManager
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

import accounts.backends
from accounts.backends import LEGACY_BACKEND, AccountBackend
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _login(client: Client, username: str, password: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("login"), {"username": username, "password": password})


def test_signing_in_names_this_backend(client: Client, user: AbstractBaseUser) -> None:
    assert _login(client, user.get_username(), PASSWORD).status_code == 302
    assert client.session["_auth_user_backend"] == "accounts.backends.AccountBackend"
    assert client.get(reverse("account")).status_code == 200


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_a_wrong_password_is_checked_once(
    client: Client, user: AbstractBaseUser, username: str
) -> None:
    # An unknown name still costs one hash (ModelBackend's guard against telling them apart).
    with (
        mock.patch.object(User, "check_password", autospec=True, return_value=False) as check,
        mock.patch.object(User, "set_password", autospec=True) as hash_anyway,
    ):
        assert _login(client, username, "wrong").status_code == 200

    assert check.call_count + hash_anyway.call_count == 1
    assert "_auth_user_id" not in client.session


def test_a_session_signed_in_through_djangos_backend_stays_signed_in(
    client: Client, user: AbstractBaseUser
) -> None:
    client.force_login(user, backend=LEGACY_BACKEND)

    page = client.get(reverse("account"))

    assert page.status_code == 200
    assert user.get_username() in page.content.decode()


def test_each_request_reads_its_user_with_one_compiled_statement(user: AbstractBaseUser) -> None:
    backend = AccountBackend()
    backend.get_user(user.pk)  # compiled here, once per process

    with (
        mock.patch.object(
            SQLCompiler, "as_sql", autospec=True, wraps=SQLCompiler.as_sql
        ) as compiles,
        CaptureQueriesContext(connection) as queries,
    ):
        found = backend.get_user(str(user.pk))  # the session keeps it as text

    assert found == user
    assert found is not None
    assert found.password == get_user_model().objects.get(pk=user.pk).password
    assert compiles.call_count == 0
    assert len(queries.captured_queries) == 1


def test_an_inactive_or_missing_user_is_nobody(user: AbstractBaseUser) -> None:
    backend = AccountBackend()
    assert backend.get_user(user.pk + 1000) is None
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert backend.get_user(user.pk) is None


def test_signing_in_reads_the_user_by_name_with_one_compiled_statement(
    user: AbstractBaseUser,
) -> None:
    backend = AccountBackend()
    assert backend.authenticate(None, username=user.get_username(), password=PASSWORD) == user

    with (
        mock.patch.object(
            SQLCompiler, "as_sql", autospec=True, wraps=SQLCompiler.as_sql
        ) as compiles,
        CaptureQueriesContext(connection) as queries,
    ):
        found = backend.authenticate(None, username=user.get_username(), password=PASSWORD)

    assert found == user
    assert compiles.call_count == 0
    assert len(queries.captured_queries) == 1


@pytest.mark.parametrize(
    ("username", "password"),
    [("ALICE", PASSWORD), ("alice ", PASSWORD), ("alice", "wrong"), ("nobody", PASSWORD)],
    ids=["other case", "trailing space", "wrong password", "unknown"],
)
def test_only_the_exact_name_and_password_sign_in(
    user: AbstractBaseUser, username: str, password: str
) -> None:
    assert user.get_username() == "alice"
    with pytest.raises(PermissionDenied):
        AccountBackend().authenticate(None, username=username, password=password)


def test_an_inactive_user_cannot_sign_in(user: AbstractBaseUser) -> None:
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(PermissionDenied):
        AccountBackend().authenticate(None, username=user.get_username(), password=PASSWORD)


def test_a_manager_that_looks_names_up_its_own_way_is_asked(user: AbstractBaseUser) -> None:
    def any_case(manager: UserManager[User], username: str) -> User:
        return manager.get(username__iexact=username)

    accounts.backends._users_by_name.cache_clear()
    try:
        with mock.patch.object(UserManager, "get_by_natural_key", any_case):
            found = AccountBackend().authenticate(None, username="ALICE", password=PASSWORD)
    finally:
        accounts.backends._users_by_name.cache_clear()

    assert found == user
