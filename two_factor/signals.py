"""A new login or a logout always starts unverified."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import Signal, receiver

from two_factor.session import session_unverify

# Sent once per committed state change, after the transaction commits (never for a
# rolled-back one). Keyword arguments: verification (the row as saved), from_status,
# to_status, reason. Observers (logs, metrics) must not raise; errors are logged.
verification_transitioned = Signal()

# Sent when a rate limit refuses someone: name (the limit), retry_after (seconds).
rate_limit_refused = Signal()


@receiver(user_logged_in)
@receiver(user_logged_out)
def _end_verified_session(sender: Any, request: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        session_unverify(session=request.session)


# --- open websockets follow the sessions they were opened in (two_factor.consumers) -------


@receiver(user_logged_out)
def _close_the_sessions_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    from two_factor.live import sockets_session_ended

    session = getattr(request, "session", None)
    if user is not None and session is not None:
        sockets_session_ended(user_id=user.pk, session_key=session.session_key)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _recheck_sockets_after_a_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    from two_factor.live import sockets_access_changed

    # set_password() keeps the new raw password in `_password` until the save that
    # stores it (a new user has no sockets yet); the sockets look once the new hash is
    # committed, so they see it.
    if not kwargs.get("created") and getattr(instance, "_password", None) is not None:
        user_id = instance.pk
        transaction.on_commit(lambda: sockets_access_changed(user_id=user_id))


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _forget_devices_after_a_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    from two_factor.services.devices import PASSWORD_CHANGED, devices_forget

    # The same mark of a new password as above; in the save's own transaction.
    if not kwargs.get("created") and getattr(instance, "_password", None) is not None:
        devices_forget(user_id=instance.pk, reason=PASSWORD_CHANGED)
