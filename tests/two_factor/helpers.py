from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.test import Client


def mark_session_verified(client: Client, user: AbstractBaseUser) -> None:
    """Give the client's session the verified flag, as the completion view would."""
