from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.utils import timezone

from two_factor.models import PhoneNumber
from two_factor.session import session_mark_verified

DEFAULT_NUMBER = "+447911123456"


def give_phone(
    user: AbstractBaseUser, number: str = DEFAULT_NUMBER, verified: bool = True
) -> PhoneNumber:
    phone, _ = PhoneNumber.objects.update_or_create(
        user=user, defaults={"number": number, "verified_at": timezone.now() if verified else None}
    )
    return phone


def mark_session_verified(
    client: Client, user: AbstractBaseUser, number: str | None = None
) -> None:
    """Give the client's session the verified flag, as the completion view would."""
    phone = give_phone(user, number or _unique_number(user))
    session = client.session
    session_mark_verified(session=session, user=user, number=phone.number)
    session.save()


def _unique_number(user: AbstractBaseUser) -> str:
    # Numbers are unique across accounts: derive a valid GB mobile from the user id.
    return f"+4479111{int(user.pk) % 100000:05d}"
