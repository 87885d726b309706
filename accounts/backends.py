"""How a request's signed-in user is read: Django's ModelBackend, with the user fetched
by a prepared read (pollstr/db/prepared.py). Every request of a signed-in voter reads its
user; through the ORM that read was ~0.8 ms of CPU, most of it compiling the same query.
A sign-in reads the user by name the same way (0.67 → 0.21 ms of CPU, see
benchmarks/results/widget-render-2026-12-08/README.md), unless the user model's manager
looks names up its own way.
"""

from __future__ import annotations

from functools import cache
from typing import Any, cast

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from pollstr.db.prepared import PreparedRead

# Sessions signed in before this backend name Django's own; it stays listed after this
# one so they stay signed in, and is never asked to check a password (see authenticate).
LEGACY_BACKEND = "django.contrib.auth.backends.ModelBackend"


@cache  # built at first use: the user model is known once the apps are loaded
def _users() -> PreparedRead[Any]:
    return PreparedRead(get_user_model(), "pk")


@cache
def _users_by_name() -> PreparedRead[Any] | None:
    """The read ``get_by_natural_key`` makes (the username, exactly), prepared; None when
    the user model's manager overrides that lookup (say, case-insensitive names)."""
    model = get_user_model()
    lookup = type(model._default_manager).get_by_natural_key
    if lookup is not BaseUserManager.get_by_natural_key:
        return None
    return PreparedRead(model, model.USERNAME_FIELD)


class AccountBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        by_name = _users_by_name()
        if by_name is None:
            user = super().authenticate(request, username=username, password=password, **kwargs)
        else:
            user = self._authenticate(by_name, username, password, **kwargs)
        if user is None:
            # The last word: Django would otherwise ask the legacy backend to hash the same
            # wrong password again.
            raise PermissionDenied
        return user

    async def aauthenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        user = await super().aauthenticate(request, username=username, password=password, **kwargs)
        if user is None:
            raise PermissionDenied
        return user

    def _authenticate(
        self, by_name: PreparedRead[Any], username: str | None, password: str | None, **kwargs: Any
    ) -> User | None:
        """ModelBackend.authenticate, the user read by ``by_name``."""
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        user = by_name.first(username)
        if user is None:
            # As ModelBackend: hash the password anyway, so an unknown name takes as long
            # as a known one with a wrong password.
            get_user_model()().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return cast(User, user)
        return None

    def get_user(self, user_id: Any) -> User | None:
        user = _users().first(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
