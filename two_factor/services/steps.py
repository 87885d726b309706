"""The steps after the SMS: a call (asked for, or when the SMS step times out), expiry,
cancelling, and the provider cancel behind it."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from two_factor.gateways.errors import (
    NoMoreChannels,
    PermanentGatewayError,
    RequestNotFound,
)
from two_factor.models import (
    Status,
    Verification,
)
from two_factor.outcomes import OUTCOMES
from two_factor.services.delivery import (
    _describe,
    _enqueue,
    _enqueue_cancel,
    _provider,
    _release_connection,
)
from two_factor.services.refusals import VerificationRefused
from two_factor.services.transitions import transition_if_allowed, verification_note

CALL_NOT_STARTED = gettext_noop(
    "We couldn't start the call just now. Enter the code from the SMS, or wait: "
    "we'll call you when the SMS step ends."
)


def verification_call_instead(*, verification: Verification) -> None:
    verification_refresh(verification=verification)
    if verification.status != Status.SENT:
        raise VerificationRefused(
            gettext_noop("We're already calling you.")
            if verification.status == Status.CALLING
            else gettext_noop("There is no code on its way to switch to a call.")
        )
    transaction.on_commit(lambda: _enqueue("next_channel", verification.pk))


def verification_next_channel(*, verification_id: UUID, reason: str) -> Verification:
    """Worker side of "call me instead"."""
    verification = Verification.objects.get(pk=verification_id)
    if verification.status != Status.SENT:
        return verification
    try:
        _release_connection()
        _provider().next_channel(request_id=verification.request_id)
    except NoMoreChannels:
        pass  # the provider moved on by itself already: show the call
    except RequestNotFound:
        transition_if_allowed(
            verification,
            Status.EXPIRED,
            reason="provider: not found or expired",
            failure_reason=OUTCOMES["expired"].sentence,
        )
        return verification
    except PermanentGatewayError as error:
        verification_note(
            verification, reason=f"call not started: {error.message}", notice=CALL_NOT_STARTED
        )
        return verification
    verification_voice_started(verification, reason=reason)
    return verification


def verification_next_channel_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The call could not be asked for after retries: say so; the SMS step's own deadline
    still moves the verification to the call."""
    verification = Verification.objects.get(pk=verification_id)
    if verification.status == Status.SENT:
        verification_note(
            verification, reason=f"call not started: {_describe(error)}", notice=CALL_NOT_STARTED
        )


def verification_voice_started(verification: Verification, *, reason: str) -> None:
    now = timezone.now()
    transition_if_allowed(
        verification,
        Status.CALLING,
        reason=reason,
        channel="voice",
        channel_deadline=now + timedelta(seconds=settings.TWO_FACTOR_CHANNEL_TIMEOUT),
    )


def verification_refresh(*, verification: Verification) -> Verification:
    """Apply the deadlines that have passed: SMS step → voice call → expired.

    Verify moves to the next step by itself when a step's channel timeout passes; we
    mirror that from our own clock so the page never shows a stale step.
    """
    deadline = verification.channel_deadline
    if deadline is None or deadline > timezone.now():
        return verification
    if verification.status == Status.SENT:
        verification_voice_started(verification, reason="no code entered in time: calling instead")
    elif verification.status == Status.CALLING:
        transition_if_allowed(
            verification,
            Status.EXPIRED,
            reason="voice step timed out",
            failure_reason=OUTCOMES["expired"].sentence,
        )
    return verification


def verification_cancel(*, verification: Verification, ip: str | None) -> None:
    if not verification.is_live:
        return
    cancelled = transition_if_allowed(
        verification, Status.CANCELLED, reason="cancelled by the user", ip=ip
    )
    if cancelled and verification.request_id:
        _enqueue_cancel(verification)


def verification_provider_cancel(*, request_id: str) -> None:
    """Best effort: Verify refuses cancels early in a request; it then expires by itself."""
    try:
        _provider().cancel(request_id=request_id)
    except (RequestNotFound, PermanentGatewayError) as error:
        _note_cancel_not_done(request_id, error)


def verification_provider_cancel_gave_up(*, request_id: str, error: Exception) -> None:
    _note_cancel_not_done(request_id, error)


def _note_cancel_not_done(request_id: str, error: Exception) -> None:
    # The verification has ended already; the trail says the provider kept its request
    # (it expires by itself, and its code can no longer verify anything here).
    for verification in Verification.objects.filter(request_id=request_id):
        verification_note(verification, reason=f"provider cancel not done: {_describe(error)}")
