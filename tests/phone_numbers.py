"""The phone numbers the tests use, and giving a user one.

Numbers are unique across accounts, so a test that needs a second holder takes
OTHER_NUMBER or `unique_number(user)`.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from two_factor.models import PhoneNumber

# Valid GB mobiles, in E.164 as the service stores them.
NUMBER = "+447911123456"
OTHER_NUMBER = "+447400123456"


def provider_digits(number: str) -> str:
    """The number as the provider writes it in a workflow's `to`: E.164 without the +."""
    return number.removeprefix("+")


def unique_number(user: AbstractBaseUser) -> str:
    """A valid GB mobile derived from the user id, so each account gets its own."""
    return f"+4479111{int(user.pk) % 100000:05d}"


def give_phone(user: AbstractBaseUser, number: str = NUMBER, verified: bool = True) -> PhoneNumber:
    """Store `number` as the user's phone, verified unless told otherwise."""
    phone, _ = PhoneNumber.objects.update_or_create(
        user=user, defaults={"number": number, "verified_at": timezone.now() if verified else None}
    )
    return phone
