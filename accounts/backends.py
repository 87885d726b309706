"""How a request's signed-in user is read: Django's ModelBackend, with the user fetched
by a prepared read (pollstr/db/prepared.py). Every request of a signed-in voter reads its
user; through the ORM that read was ~0.8 ms of CPU, most of it compiling the same query.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
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


class AccountBackend(ModelBackend):
    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        user = super().authenticate(request, username=username, password=password, **kwargs)
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

    def get_user(self, user_id: Any) -> User | None:
        user = _users().first(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None
