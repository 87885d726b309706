"""The per-session *verified* flag: one writer, one predicate, and nobody else reads it.

- Writing: `session_verify` (a code was verified, or a remembered device vouched for
  the browser) gives the session a new key and then the flag; `session_unverify`
  (login, logout) drops it. Nothing else stores or edits `SESSION_KEY`.
- Reading: `session_verified_until` is the rule, `session_is_verified` asks it about
  now, and `request_is_verified` is the same question for a request (what
  `two_factor.middleware` attaches as `request.is_verified()`). Views, the protection
  decorator, templates and websocket consumers all ask these; none reads the flag's
  fields or the `TWO_FACTOR_VERIFIED_MAX_AGE` setting itself.

The flag is bound to the user it was issued for (through the user's session auth hash,
so a password change ends it), to the number that was verified (a new number, or the
number moving to another account, ends it), and to an age.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from two_factor.models import phone_number_of
from two_factor.numbers import number_hash

# Where the flag is stored in the session: only this module (and its own tests) use it.
SESSION_KEY = "two_factor_verified"


# --- the writer -----------------------------------------------------------------------------


def session_verify(*, session: Any, user: AbstractBaseUser, number: Any) -> None:
    """The one way a session becomes verified (a code, or a remembered device): a new
    session key, so a key seen before verification never carries the flag, then the flag."""
    session.cycle_key()
    session[SESSION_KEY] = {
        "user_id": str(user.pk),
        "auth_hash": user.get_session_auth_hash(),
        "phone_hash": number_hash(number),
        "at": time.time(),
    }


def session_unverify(*, session: Any) -> None:
    """End the flag (a login or a logout starts unverified). Harmless when there is none."""
    session.pop(SESSION_KEY, None)


# --- the predicate ----------------------------------------------------------------------------


def session_verified_until(*, session: Any, user: AbstractBaseUser | AnonymousUser) -> float | None:
    """When this session's verified flag ends for `user` (epoch seconds; it may already
    have passed), or None when the session holds no flag that could verify `user`: none
    at all, another user's, one from before a password change, one for a number that is
    no longer this user's verified number, or a malformed one."""
    flag = session.get(SESSION_KEY)
    if not isinstance(flag, dict) or not user.is_authenticated:
        return None
    try:
        until = float(flag.get("at", 0)) + settings.TWO_FACTOR_VERIFIED_MAX_AGE
    except (TypeError, ValueError):
        return None
    phone = phone_number_of(user)
    bound = (
        flag.get("user_id") == str(user.pk)
        and constant_time_compare(str(flag.get("auth_hash", "")), user.get_session_auth_hash())
        and phone is not None
        and phone.verified_at is not None
        and constant_time_compare(str(flag.get("phone_hash", "")), number_hash(phone.number))
    )
    return until if bound else None


def session_is_verified(*, session: Any, user: AbstractBaseUser | AnonymousUser) -> bool:
    until = session_verified_until(session=session, user=user)
    return until is not None and time.time() < until


def request_is_verified(request: HttpRequest) -> bool:
    """Whether this request's session is phone-verified for its signed-in user."""
    user = getattr(request, "user", None)
    session = getattr(request, "session", None)
    if user is None or session is None:
        return False
    return session_is_verified(session=session, user=user)
