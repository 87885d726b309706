"""Moving along a verification's workflow (the next channel, asked for or when a step
times out), expiry, cancelling, and the provider cancel behind it. Which channels there
are and what they are called is two_factor/channels.py's business."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from two_factor.channels import CHANNELS, channel_get
from two_factor.gateways.errors import (
    NoMoreChannels,
    PermanentGatewayError,
    RequestNotFound,
)
from two_factor.models import (
    VERIFICATION_BY_ID,
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
from two_factor.services.refusals import VerificationRefused, _limit
from two_factor.services.transitions import _publish, transition_if_allowed, verification_note

SWITCH_NOT_DONE = gettext_noop(
    "We couldn't switch just now. Enter the code you have, or wait: the next way of "
    "sending it starts by itself when this one's time is up."
)


def verification_switch_channel(*, verification: Verification, channel: str) -> None:
    """The voter asked for the code by ``channel`` instead ("Call me instead"): one of
    the channels the verification's workflow still has after its current step."""
    verification_refresh(verification=verification)
    if verification.status != Status.SENT:
        raise VerificationRefused(gettext_noop("There is no code on its way to send another way."))
    if channel == verification.channel:
        raise VerificationRefused(gettext_noop("We're already sending your code that way."))
    if channel not in verification.channels_left:
        raise VerificationRefused(gettext_noop("That way of sending the code isn't available now."))
    _limit([("switch_per_user", str(verification.user_id))])
    Verification.objects.filter(pk=verification.pk, status=Status.SENT).update(switching_to=channel)
    verification.switching_to = channel
    transaction.on_commit(lambda: _publish(verification.pk))
    transaction.on_commit(lambda: _enqueue("next_channel", verification.pk, channel))


def verification_next_channel(
    *, verification_id: UUID, reason: str, channel: str | None = None
) -> Verification:
    """Worker side of a switch: move the provider on to ``channel`` (the next step when
    None). Verify only moves one step at a time (``next_workflow``), so reaching a later
    channel skips the ones between, and each skipped step may send its message."""
    verification = VERIFICATION_BY_ID.get(verification_id)
    _move_on(verification, channel=channel, reason=reason)
    # Done, whatever the provider said: the page stops saying "Sending your code by …"
    # (a transition already cleared it when the step started; an error the task retries
    # keeps it, and giving up clears it with its notice).
    if (
        Verification.objects.filter(pk=verification_id)
        .exclude(switching_to="")
        .update(switching_to="")
    ):
        _publish(verification_id)
    return verification


def _move_on(verification: Verification, *, channel: str | None, reason: str) -> None:
    left = verification.channels_left
    target = channel or (left[0] if left else None)
    if target is None or target not in left:
        return  # moved on already (its timeout, a callback): nothing to do
    for _ in range(left.index(target) + 1):
        try:
            _release_connection()
            _provider().next_channel(request_id=verification.request_id)
        except NoMoreChannels:
            return  # the provider ended the workflow by itself: its deadline says so
        except RequestNotFound:
            transition_if_allowed(
                verification,
                Status.EXPIRED,
                reason="provider: not found or expired",
                failure_reason=OUTCOMES["expired"].sentence,
            )
            return
        except PermanentGatewayError as error:
            verification_note(
                verification,
                reason=f"switch not done: {error.message}",
                notice=SWITCH_NOT_DONE,
            )
            return
        verification_step_started(verification, step=verification.step + 1, reason=reason)
        if verification.status != Status.SENT:
            return


def verification_next_channel_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The switch could not be asked for after retries: say so; the step's own deadline
    still moves the verification on."""
    verification = VERIFICATION_BY_ID.get(verification_id)
    if verification.status == Status.SENT:
        verification_note(
            verification, reason=f"switch not done: {_describe(error)}", notice=SWITCH_NOT_DONE
        )


def verification_step_started(
    verification: Verification,
    *,
    step: int,
    reason: str,
    at: datetime | None = None,
    notice: str = "",
) -> None:
    """The workflow's ``step`` has started (we asked, its timeout passed, or the provider
    said so), at ``at`` (now by default): the row moves to it. Never backwards, never
    past the workflow."""
    if verification.status != Status.SENT or not (
        verification.step < step < len(verification.workflow)
    ):
        return
    channel = verification.workflow[step]
    transition_if_allowed(
        verification,
        Status.SENT,
        reason=f"{reason}: {channel} step started",
        step=step,
        channel=channel,
        channel_deadline=channel_get(channel).deadline(now=at or timezone.now()),
        notice=notice,
    )


def step_gave_up_notice(verification: Verification) -> str:
    """What the voter is told when the current step ended without verifying and the
    workflow moves on: the step's own sentence, then what happens next."""
    row, left = CHANNELS.get(verification.channel), verification.channels_left
    then = CHANNELS.get(left[0]) if left else None
    if row is None or row.gave_up is None or then is None:
        return ""
    return f"{row.gave_up} {then.running % {'number': verification.masked_number}}"


def verification_refresh(*, verification: Verification) -> Verification:
    """Apply the deadlines that have passed: the next step of the workflow, and after
    the last one, expired.

    Verify moves to the next step by itself when a step's channel timeout passes; we
    mirror that from our own clock so the page never shows a stale step.
    """
    while verification.status == Status.SENT:
        deadline = verification.channel_deadline
        if deadline is None or deadline > timezone.now():
            break
        if not verification.channels_left:
            transition_if_allowed(
                verification,
                Status.EXPIRED,
                reason=f"{verification.channel} step timed out",
                failure_reason=OUTCOMES["expired"].sentence,
            )
            break
        step = verification.step + 1
        # Verify started the next step when this one's time was up, not when we looked.
        verification_step_started(
            verification,
            step=step,
            reason="no code entered in time",
            at=deadline,
            notice=step_gave_up_notice(verification),
        )
        if verification.step != step:
            break
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
