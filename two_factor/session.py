"""The per-session *verified* flag: set only by completion, read by the middleware.

The flag is bound to the user it was issued for (through the user's session auth hash,
so a password change ends it), to the number that was verified, and to an age.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils.crypto import constant_time_compare

from two_factor.numbers import number_hash

SESSION_KEY = "two_factor_verified"


def session_key_hash(session_key: str) -> str:
    """What a Verification stores of its session: never the key itself."""
    return hashlib.sha256(f"{settings.SECRET_KEY}:{session_key}".encode()).hexdigest()


def session_verify(*, session: Any, user: AbstractBaseUser, number: Any) -> None:
    """The one way a session becomes verified (a code, or a remembered device): a new
    session key, so a key seen before verification never carries the flag, then the flag."""
    session.cycle_key()
    session_mark_verified(session=session, user=user, number=number)


def session_mark_verified(*, session: Any, user: AbstractBaseUser, number: Any) -> None:
    session[SESSION_KEY] = {
        "user_id": str(user.pk),
        "auth_hash": user.get_session_auth_hash(),
        "phone_hash": number_hash(number),
        "at": time.time(),
    }


def session_clear_verified(*, session: Any) -> None:
    session.pop(SESSION_KEY, None)


def session_is_verified(*, session: Any, user: AbstractBaseUser) -> bool:
    flag = session.get(SESSION_KEY)
    if not isinstance(flag, dict) or not user.is_authenticated:
        return False
    phone = getattr(user, "phone_number", None)
    try:
        fresh = time.time() - float(flag.get("at", 0)) < settings.TWO_FACTOR_VERIFIED_MAX_AGE
    except (TypeError, ValueError):
        return False
    return (
        fresh
        and flag.get("user_id") == str(user.pk)
        and constant_time_compare(str(flag.get("auth_hash", "")), user.get_session_auth_hash())
        and phone is not None
        and phone.verified_at is not None
        and constant_time_compare(str(flag.get("phone_hash", "")), number_hash(phone.number))
    )
