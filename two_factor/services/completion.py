"""Completion: a verified verification is consumed by the browser's own session, which is
rotated and marked verified. The worker never writes sessions."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from two_factor.models import (
    VERIFICATION_LOCKED,
    Status,
    Verification,
    session_key_hash,
)
from two_factor.services.refusals import AlreadyCompleted, VerificationRefused
from two_factor.services.transitions import transition, transition_unless_changed


def verification_complete(*, verification: Verification, session: Any) -> None:
    """Consume a verified verification for this session: rotate the key, set the flag."""
    from two_factor.session import session_verify

    if verification.session_key_hash != session_key_hash(session.session_key or ""):
        raise VerificationRefused(gettext_noop("This verification belongs to another session."))
    user = verification.user  # read now: the locked row below carries no cached relations
    # Two tabs following the link at once: one statement consumes the row only while it
    # is as this request read it (the usual case); otherwise the row is read under its
    # lock, and the second tab finds it consumed.
    consumed = verification.status == Status.VERIFIED and transition_unless_changed(
        verification, Status.CONSUMED, reason="session verified", consumed_at=timezone.now()
    )
    if not consumed:
        with transaction.atomic():
            locked = VERIFICATION_LOCKED.get(verification.pk)
            if locked.status == Status.CONSUMED:
                raise AlreadyCompleted(gettext_noop("This verification is already complete."))
            if locked.status != Status.VERIFIED:
                raise VerificationRefused(gettext_noop("This verification isn't finished yet."))
            verification.__dict__.update(locked.__dict__)
            transition(
                verification,
                Status.CONSUMED,
                reason="session verified",
                consumed_at=timezone.now(),
                locked=True,
            )
    session_verify(session=session, user=user, number=verification.number)
