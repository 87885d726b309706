"""A new login or a logout always starts unverified."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from two_factor.session import session_clear_verified


@receiver(user_logged_in)
@receiver(user_logged_out)
def _end_verified_session(sender: Any, request: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_clear_verified(session=request.session)
