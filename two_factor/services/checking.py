"""Checking a code: the web side validates and queues it, the worker asks the provider and
settles the verification through the one outcome table (two_factor.outcomes)."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from two_factor.gateways.errors import (
    InvalidCode,
    PermanentGatewayError,
    RequestNotFound,
    StepTakesNoCode,
    TooManyAttempts,
)
from two_factor.models import (
    VERIFICATION_BY_ID,
    VERIFICATION_LOCKED,
    Status,
    Verification,
)
from two_factor.outcomes import OUTCOMES, Outcome, outcome_of_error
from two_factor.services.delivery import (
    _describe,
    _enqueue,
    _enqueue_cancel,
    _provider,
    _release_connection,
)
from two_factor.services.phone_numbers import NUMBER_MOVED, phone_number_bind
from two_factor.services.refusals import MalformedCode, VerificationRefused, _limit
from two_factor.services.steps import verification_refresh
from two_factor.services.transitions import (
    transition,
    transition_if_allowed,
    transition_unless_changed,
)

# Sentences the voter sees when the reconciler or a give-up settles a row.
CHECK_AGAIN = gettext_noop("We couldn't check your code just now. Please enter it again.")


# ASCII digits only: `\d` also matches Arabic-Indic and full-width digits, which can never
# equal the code we sent; checking them would only use up one of the person's attempts.
_CODE_RE = re.compile(r"^[0-9]+$")


def verification_submit_code(
    *, verification: Verification, code: str, ip: str | None
) -> Verification:
    """Web side of a check: validate the code's shape, then queue the provider check."""
    code = re.sub(r"[\s-]", "", code or "")
    length = settings.TWO_FACTOR_CODE_LENGTH
    if not _CODE_RE.match(code) or len(code) != length:
        raise MalformedCode(
            gettext("Enter the %(length)d-digit code we sent you.") % {"length": length}
        )
    verification_refresh(verification=verification)
    with transaction.atomic():
        # Two submissions at once (a double click, two tabs) queue on the row: the second
        # sees `checking` and is told so; only a check that goes on to the provider counts.
        # The usual case, the row as this request read it, is one statement whose write
        # holds the lock (a refusal of the limit below rolls it back); else the row is
        # read under its lock and judged on what it holds.
        moved = verification.accepts_code and transition_unless_changed(
            verification, Status.CHECKING, reason="code submitted", ip=ip
        )
        if not moved:
            locked = VERIFICATION_LOCKED.get(verification.pk)
            verification.__dict__.update(locked.__dict__)
            if not verification.accepts_code:
                raise VerificationRefused(_why_no_code(verification))
        _limit([("check_per_user", str(verification.user_id))])
        if not moved:
            transition(verification, Status.CHECKING, reason="code submitted", ip=ip, locked=True)
        transaction.on_commit(lambda: _enqueue("check", verification.pk, code))
    return verification


def _why_no_code(verification: Verification) -> str:
    if verification.status == Status.CHECKING:
        return gettext_noop("We're still checking your last code.")
    if verification.status in (Status.QUEUED, Status.SENDING):
        return gettext_noop("Your code hasn't been sent yet. Wait a moment, then try again.")
    if verification.status in (Status.VERIFIED, Status.CONSUMED):
        return gettext_noop("This number is already verified.")
    return gettext_noop("This code request has ended. Ask for a new code.")


def verification_check(*, verification_id: UUID, code: str) -> Verification:
    """Worker side of a check. Raises TransientGatewayError for the task to retry."""
    verification = VERIFICATION_BY_ID.get(verification_id)
    if verification.status != Status.CHECKING:
        return verification  # redelivered after it was settled
    # Back to the step the code was typed on (the row's channel stays as it was).
    back_to = Status.SENT
    try:
        _release_connection()
        _provider().check(request_id=verification.request_id, code=code)
    except InvalidCode as error:
        wrong = verification.wrong_codes + 1
        if wrong < settings.TWO_FACTOR_MAX_WRONG_CODES:
            transition_if_allowed(verification, back_to, reason=error.message, wrong_codes=wrong)
            return verification
        # Our own count ends it even where the provider would allow one more.
        _settle(
            verification,
            OUTCOMES["too_many_attempts"],
            reason="too many wrong codes (local count)",
            wrong_codes=wrong,
        )
        _enqueue_cancel(verification)
        return verification
    except StepTakesNoCode as error:
        # A notice of its own, so an earlier "didn't match" doesn't read as this verdict.
        transition_if_allowed(verification, back_to, reason=error.message, notice=error.message)
        return verification
    except TooManyAttempts as error:
        wrong = max(verification.wrong_codes + 1, settings.TWO_FACTOR_MAX_WRONG_CODES)
        _settle(
            verification,
            outcome_of_error(error),
            reason="too many wrong codes (provider)",
            wrong_codes=wrong,
        )
        return verification
    except RequestNotFound as error:
        _settle(verification, outcome_of_error(error), reason="provider: not found or expired")
        return verification
    except PermanentGatewayError as error:
        # A permanent error the table doesn't name carries its own sentence.
        outcome = outcome_of_error(error) or Outcome(Status.FAILED, error.message)
        _settle(verification, outcome, reason=error.message)
        return verification
    verification_mark_verified(verification=verification, reason="code accepted")
    return verification


def _settle(
    verification: Verification, outcome: Outcome | None, *, reason: str, **fields: Any
) -> None:
    """End a verification the way the provider's verdict says (two_factor.outcomes)."""
    assert outcome is not None
    transition_if_allowed(
        verification, outcome.status, reason=reason, failure_reason=outcome.sentence, **fields
    )


def verification_check_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The check could not reach the provider: the code is not used up, so the voter is
    asked to enter it again (nothing retries behind their back)."""
    verification = VERIFICATION_BY_ID.get(verification_id)
    if verification.status != Status.CHECKING:
        return
    transition_if_allowed(
        verification,
        Status.SENT,
        reason=f"check not possible now: {_describe(error)}",
        notice=CHECK_AGAIN,
    )


def verification_mark_verified(*, verification: Verification, reason: str) -> None:
    """The code was right: the verification is verified and its number is the account's."""
    now = timezone.now()
    with transaction.atomic():
        if not transition_if_allowed(verification, Status.VERIFIED, reason=reason, verified_at=now):
            return
        if phone_number_bind(user_id=verification.user_id, number=verification.number, at=now):
            # For the completion page (the status fragment of a verified row shows no
            # notice, so the transition's push needs no second one).
            Verification.objects.filter(pk=verification.pk).update(notice=NUMBER_MOVED)
            verification.notice = NUMBER_MOVED
