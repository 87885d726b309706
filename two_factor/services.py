"""Phone verification: the business rules. Views and tasks only call these functions.

Every status change goes through `transition()`, which checks the state machine, saves,
appends an audit event and publishes the new state to the live page, in one place.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from phonenumber_field.phonenumber import PhoneNumber as ParsedNumber

from two_factor import gateways
from two_factor.gateways.errors import (
    ConcurrentRequest,
    InvalidCode,
    NoMoreChannels,
    PermanentGatewayError,
    RequestNotFound,
    StepTakesNoCode,
    TooManyAttempts,
    TransientGatewayError,
)
from two_factor.limits import RateLimited, limits_hit
from two_factor.models import (
    LIVE_STATUSES,
    TRANSITIONS,
    PhoneNumber,
    Status,
    Verification,
    VerificationEvent,
)
from two_factor.numbers import NumberRefused, number_check, number_parse
from two_factor.session import session_key_hash

logger = logging.getLogger(__name__)


class VerificationRefused(Exception):
    """Something the person asked for that we won't do; the message tells them why."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AlreadyCompleted(VerificationRefused):
    """The verification was consumed meanwhile (another tab, a double click)."""


class IllegalTransition(Exception):
    pass


# Sentences the voter sees when the reconciler or a give-up settles a row.
CHECK_AGAIN = "We couldn't check your code just now. Please enter it again."
SEND_GAVE_UP = (
    "We couldn't reach the SMS provider after several tries. Please ask for a new code in a minute."
)
SEND_UNCONFIRMED = "We couldn't confirm that your code was sent. Please ask for a new code."


# --- the one transition path ---------------------------------------------------------------


def transition(
    verification: Verification,
    to: Status,
    *,
    reason: str = "",
    ip: str | None = None,
    **fields: Any,
) -> Verification:
    """Move `verification` to `to`, saving `fields` with it, auditing and publishing.

    Locks the row so concurrent deliveries (a worker and a callback) serialise; the
    state machine is checked against the row as stored, not as the caller last saw it.
    Every transition sets the row's next deadline (see `deadline_for`) and replaces
    the voter's notice, unless the caller passes them.
    """
    with transaction.atomic():
        current = Verification.objects.select_for_update().get(pk=verification.pk)
        if to not in TRANSITIONS[current.status]:
            raise IllegalTransition(f"{current.status} → {to} is not allowed")
        from_status = current.status
        current.status = to
        fields.setdefault("notice", "")
        for name, value in fields.items():
            setattr(current, name, value)
        if "deadline_at" not in fields:
            current.deadline_at = deadline_for(current, now=timezone.now())
        current.save()
        VerificationEvent.objects.create(
            verification=current, from_status=from_status, to_status=to, reason=reason, ip=ip
        )
        transaction.on_commit(lambda: _publish(current.pk))
        transaction.on_commit(
            lambda: _announce(current, from_status=from_status, to_status=to, reason=reason)
        )
    # Hand the caller the fresh row so it never acts on a stale status.
    verification.__dict__.update(current.__dict__)
    return verification


def _publish(verification_id: UUID) -> None:
    from two_factor.live import verification_publish

    try:
        verification_publish(verification_id=verification_id)
    except Exception:
        # The database is the truth; a page that missed a push catches up on reconnect.
        logger.exception("Could not publish verification %s", verification_id)


def task_grace() -> timedelta:
    """How long a task may run (its hard time limit) plus one sweep: past this, a row
    still in `sending` or `checking` has lost its task."""
    return timedelta(
        seconds=settings.CELERY_TASK_TIME_LIMIT + settings.TWO_FACTOR_RECONCILE_INTERVAL
    )


def deadline_for(verification: Verification, *, now: Any) -> Any:
    """When the reconciler must look at this row next if no task or callback does."""
    if verification.status == Status.QUEUED:
        return now + timedelta(seconds=settings.TWO_FACTOR_QUEUED_GRACE)
    if verification.status in (Status.SENDING, Status.CHECKING):
        return now + task_grace()
    if verification.status in (Status.SENT, Status.CALLING):
        return verification.channel_deadline
    return None


def _announce(verification: Verification, *, from_status: str, to_status: str, reason: str) -> None:
    from two_factor.signals import verification_transitioned

    verification_transitioned.send_robust(
        sender=Verification,
        verification=verification,
        from_status=from_status,
        to_status=to_status,
        reason=reason,
    )


def transition_if_allowed(verification: Verification, to: Status, **kwargs: Any) -> bool:
    """transition(), but a lost race (the state moved on meanwhile) is not an error."""
    try:
        transition(verification, to, **kwargs)
    except IllegalTransition:
        verification.refresh_from_db()
        return False
    return True


# --- numbers ---------------------------------------------------------------------------------


NUMBER_MOVED = (
    "This number was linked to another account. You proved it's yours, so it is now "
    "linked to this one."
)


def number_accept(*, user: AbstractBaseUser, raw_number: str) -> ParsedNumber:
    """A typed number we may text a code to (the SMS-pumping rules), or a refusal.

    It binds to nothing: a typed number is only the pending number of the verification
    it starts, and becomes the account's number when its code is verified
    (`phone_number_bind`). So typing someone else's number blocks nobody, and the answer
    is the same for every valid mobile number, registered or not.
    """
    # Counted before any check, so trying number after number is limited too.
    _limit([("number_per_user", str(user.pk))])
    try:
        parsed = number_parse(raw=raw_number)
        number_check(number=parsed)
    except NumberRefused as refused:
        raise VerificationRefused(refused.message) from None
    return parsed


def phone_number_bind(*, user_id: Any, number: Any, at: Any) -> bool:
    """Make a number whose code was just verified the account's number.

    The one who proves ownership wins: the number leaves any other account (whose
    verified sessions end with it, see two_factor.session). Returns whether it moved.
    """
    taken = PhoneNumber.objects.select_for_update().filter(number=number).exclude(user_id=user_id)
    losers = list(taken.values_list("user_id", flat=True))
    if losers:
        taken.delete()
        for loser in losers:
            # Their verified sessions end with the number: close their live sockets too.
            transaction.on_commit(lambda loser=loser: _tell_sockets_access_changed(loser))
    moved = bool(losers)
    PhoneNumber.objects.update_or_create(
        user_id=user_id, defaults={"number": number, "verified_at": at}
    )
    return moved


# --- starting ------------------------------------------------------------------------------


def verification_start(
    *,
    user: AbstractBaseUser,
    session_key: str,
    ip: str | None,
    number: ParsedNumber | None = None,
) -> Verification:
    """Queue a new verification for this session: of `number` (typed, accepted by
    `number_accept`, pending until verified) or else of the account's number.

    One start at a time per user: the user's row is locked first, so parallel clicks
    queue up here and each sees the verification the one before it created (the
    cooldown then refuses it). The unique constraint on live verifications backs this.
    """
    key_hash = session_key_hash(session_key)
    try:
        with transaction.atomic():
            verification = _start_locked(user=user, key_hash=key_hash, ip=ip, number=number)
    except IntegrityError:
        raise VerificationRefused(
            "A code is already on its way. Wait a moment, then try again.", retry_after=5
        ) from None
    return verification


def _start_locked(
    *,
    user: AbstractBaseUser,
    key_hash: str,
    ip: str | None,
    number: ParsedNumber | None,
) -> Verification:
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).only("pk"))
    if number is None:
        # Not `user.phone_number`: a cached relation may predate a bind in this request.
        phone = PhoneNumber.objects.filter(user=user).first()
        if phone is None:
            raise VerificationRefused("Add your mobile number first.")
        number = phone.number
    live = list(Verification.objects.select_for_update().filter(user=user).live())
    if any(old.status == Status.CHECKING for old in live):
        raise VerificationRefused(
            "We're checking the code you entered. Wait a moment, then try again.",
            retry_after=2,
        )
    wait = resend_available_in(live[0]) if live else 0
    if wait:
        # The same cooldown whichever button asked: "Text me a code" or "Send a new code".
        raise VerificationRefused(
            f"A code is on its way. You can ask for a new one in {wait} seconds.",
            retry_after=wait,
        )
    limits = [
        ("start_per_user", str(user.pk)),
        ("start_per_number", number.as_e164),
        ("start_per_session", key_hash),
        ("start_global_daily", "all"),
    ]
    # The per-IP limit is for accounts that never proved a phone (the shape of SMS
    # pumping: fresh accounts, many numbers). A voter who once verified is not locked
    # out by the office or carrier NAT they share an address with.
    if not PhoneNumber.objects.filter(user=user, verified_at__isnull=False).exists():
        limits.append(("start_per_ip", ip or "unknown"))
    _limit(limits)
    # One live verification per user: a new start supersedes the old one.
    for old in live:
        transition(old, Status.CANCELLED, reason="superseded by a new code request", ip=ip)
        if old.request_id:
            _enqueue_cancel(old)
    now = timezone.now()
    verification = Verification.objects.create(
        user=user,
        session_key_hash=key_hash,
        number=number,
        is_resend=bool(live),
        created_at=now,
        deadline_at=now + timedelta(seconds=settings.TWO_FACTOR_QUEUED_GRACE),
    )
    VerificationEvent.objects.create(
        verification=verification, to_status=Status.QUEUED, reason="requested", ip=ip
    )
    # Announced first, so with an in-process worker "queued" is logged before "sending".
    transaction.on_commit(
        lambda: _announce(verification, from_status="", to_status=Status.QUEUED, reason="requested")
    )
    transaction.on_commit(lambda: _enqueue("send", verification.pk))
    transaction.on_commit(lambda: _publish(verification.pk))
    return verification


def resend_available_in(verification: Verification) -> int:
    """Seconds before a new code may be requested (Verify refuses a cancel sooner, too)."""
    last = verification.sent_at or verification.created_at
    ready_at = last + timedelta(seconds=settings.TWO_FACTOR_RESEND_COOLDOWN)
    return max(0, int((ready_at - timezone.now()).total_seconds() + 0.999))


def verification_resend(
    *, verification: Verification, session_key: str, ip: str | None
) -> Verification:
    # A new code to the same number: it may still be pending (not the account's yet).
    return verification_start(
        user=verification.user, session_key=session_key, ip=ip, number=verification.number
    )


def verification_send(*, verification_id: UUID, delivery: str) -> Verification:
    """Worker side of a start: ask the provider to send the code. Idempotent.

    `delivery` names the task delivery (Celery's task id, the same across its retries
    and redeliveries): a duplicate task with another id finds the claim and sends
    nothing. Raises TransientGatewayError for the task to retry; permanent errors end
    the verification as failed here.
    """
    verification = Verification.objects.get(pk=verification_id)
    if verification.request_id or verification.status not in (Status.QUEUED, Status.SENDING):
        return verification  # the provider already has this request
    if verification.status == Status.QUEUED and not transition_if_allowed(
        verification, Status.SENDING, reason="worker picked it up", send_claim=delivery
    ):
        return verification
    if verification.send_claim != delivery:
        return verification  # another delivery owns this send
    if verification.send_attempts >= settings.TWO_FACTOR_MAX_SEND_ATTEMPTS:
        transition_if_allowed(
            verification,
            Status.FAILED,
            reason=f"gave up after {verification.send_attempts} provider calls",
            failure_reason=SEND_GAVE_UP,
        )
        return verification
    now = timezone.now()
    # Counted and re-armed before the call: a worker killed during it leaves a row the
    # reconciler re-drives once this attempt's time is up.
    Verification.objects.filter(pk=verification.pk).update(
        send_attempts=verification.send_attempts + 1,
        send_started_at=verification.send_started_at or now,
        deadline_at=now + task_grace(),
    )
    gateway = gateways.get_gateway()
    _release_connection()
    try:
        request_id = gateway.start(
            number=verification.number.as_e164, client_ref=verification.pk.hex
        )
        reason = f"sent by SMS via {gateway.name}"
    except ConcurrentRequest as conflict:
        if not conflict.live_request_id:
            raise TransientGatewayError(conflict.message) from conflict
        # Our earlier try reached the provider (or the SDK re-sent it), or another
        # verification's request to this number is live: adopt it, don't resend. The code
        # went to the number, so whoever enters it proves they hold the phone.
        request_id = conflict.live_request_id
        reason = "adopted the provider's live request"
        _release_request(request_id, keep=verification)
    except PermanentGatewayError as error:
        transition_if_allowed(
            verification, Status.FAILED, reason=error.message, failure_reason=error.message
        )
        return verification
    now = timezone.now()
    transition_if_allowed(
        verification,
        Status.SENT,
        reason=reason,
        request_id=request_id,
        channel="sms",
        sent_at=now,
        channel_deadline=now + timedelta(seconds=settings.TWO_FACTOR_CHANNEL_TIMEOUT),
    )
    return verification


def _release_request(request_id: str, *, keep: Verification) -> None:
    """Other live verifications on an adopted provider request end: only one row may
    settle it (a callback for it must never verify someone who was not sent its code)."""
    others = Verification.objects.live().filter(request_id=request_id).exclude(pk=keep.pk)
    for other in others:
        # Not cancelled at the provider: the request lives on in `keep`.
        transition_if_allowed(
            other, Status.CANCELLED, reason="provider request taken over by a newer one"
        )


def verification_send_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The task ran out of retries (provider errors, or our own database)."""
    verification = Verification.objects.get(pk=verification_id)
    transition_if_allowed(
        verification,
        Status.FAILED,
        reason=f"gave up: {_describe(error)}",
        failure_reason=SEND_GAVE_UP,
    )


def verification_retry_at(*, verification_id: UUID, seconds: float) -> None:
    """A task will retry in `seconds`: keep the row's deadline past that retry, so the
    reconciler re-drives it only if the retry itself is lost (a broker restart)."""
    due = timezone.now() + timedelta(seconds=seconds) + task_grace()
    Verification.objects.filter(pk=verification_id, status__in=LIVE_STATUSES).update(
        deadline_at=due
    )


def _describe(error: Exception) -> str:
    return getattr(error, "message", "") or f"{type(error).__name__}: {error}"


# --- checking --------------------------------------------------------------------------------

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
        raise VerificationRefused(f"Enter the {length}-digit code from the SMS or call.")
    verification_refresh(verification=verification)
    with transaction.atomic():
        # Two submissions at once (a double click, two tabs) queue on the row: the second
        # sees `checking` and is told so; only a check that goes on to the provider counts.
        locked = Verification.objects.select_for_update().get(pk=verification.pk)
        verification.__dict__.update(locked.__dict__)
        if not verification.accepts_code:
            raise VerificationRefused(_why_no_code(verification))
        _limit([("check_per_user", str(verification.user_id))])
        transition(verification, Status.CHECKING, reason="code submitted", ip=ip)
        transaction.on_commit(lambda: _enqueue("check", verification.pk, code))
    return verification


def _why_no_code(verification: Verification) -> str:
    if verification.status == Status.CHECKING:
        return "We're still checking your last code."
    if verification.status in (Status.QUEUED, Status.SENDING):
        return "Your code hasn't been sent yet. Wait a moment, then try again."
    if verification.status in (Status.VERIFIED, Status.CONSUMED):
        return "This number is already verified."
    return "This code request has ended. Ask for a new code."


def verification_check(*, verification_id: UUID, code: str) -> Verification:
    """Worker side of a check. Raises TransientGatewayError for the task to retry."""
    verification = Verification.objects.get(pk=verification_id)
    if verification.status != Status.CHECKING:
        return verification  # redelivered after it was settled
    back_to = Status.CALLING if verification.channel == "voice" else Status.SENT
    try:
        _release_connection()
        gateways.get_gateway().check(request_id=verification.request_id, code=code)
    except InvalidCode as error:
        wrong = verification.wrong_codes + 1
        if wrong >= settings.TWO_FACTOR_MAX_WRONG_CODES:
            message = "That code was wrong too many times. Ask for a new code."
            transition_if_allowed(
                verification,
                Status.FAILED,
                reason="too many wrong codes (local count)",
                wrong_codes=wrong,
                failure_reason=message,
            )
            _enqueue_cancel(verification)
        else:
            transition_if_allowed(verification, back_to, reason=error.message, wrong_codes=wrong)
        return verification
    except TooManyAttempts:
        message = "That code was wrong too many times. Ask for a new code."
        transition_if_allowed(
            verification,
            Status.FAILED,
            reason="too many wrong codes (provider)",
            wrong_codes=max(verification.wrong_codes + 1, settings.TWO_FACTOR_MAX_WRONG_CODES),
            failure_reason=message,
        )
        return verification
    except RequestNotFound:
        message = "This code has expired. Ask for a new code."
        transition_if_allowed(
            verification,
            Status.EXPIRED,
            reason="provider: not found or expired",
            failure_reason=message,
        )
        return verification
    except StepTakesNoCode as error:
        transition_if_allowed(verification, back_to, reason=error.message)
        return verification
    except PermanentGatewayError as error:
        transition_if_allowed(
            verification, Status.FAILED, reason=error.message, failure_reason=error.message
        )
        return verification
    verification_mark_verified(verification=verification, reason="code accepted")
    return verification


def verification_check_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The check could not reach the provider: the code is not used up, so the voter is
    asked to enter it again (nothing retries behind their back)."""
    verification = Verification.objects.get(pk=verification_id)
    if verification.status != Status.CHECKING:
        return
    back_to = Status.CALLING if verification.channel == "voice" else Status.SENT
    transition_if_allowed(
        verification,
        back_to,
        reason=f"check not possible now: {_describe(error)}",
        notice=CHECK_AGAIN,
    )


def verification_mark_verified(*, verification: Verification, reason: str) -> None:
    """The code was right: the verification is verified and its number is the account's."""
    now = timezone.now()
    with transaction.atomic():
        if not transition_if_allowed(
            verification, Status.VERIFIED, reason=reason, verified_at=now
        ):
            return
        if phone_number_bind(user_id=verification.user_id, number=verification.number, at=now):
            Verification.objects.filter(pk=verification.pk).update(notice=NUMBER_MOVED)
            verification.notice = NUMBER_MOVED


# --- channels, cancel, expiry ----------------------------------------------------------------


def verification_call_instead(*, verification: Verification, ip: str | None) -> None:
    verification_refresh(verification=verification)
    if verification.status != Status.SENT:
        raise VerificationRefused(
            "We're already calling you."
            if verification.status == Status.CALLING
            else "There is no code on its way to switch to a call."
        )
    transaction.on_commit(lambda: _enqueue("next_channel", verification.pk))


def verification_next_channel(*, verification_id: UUID, reason: str) -> Verification:
    """Worker side of "call me instead"."""
    verification = Verification.objects.get(pk=verification_id)
    if verification.status != Status.SENT:
        return verification
    try:
        _release_connection()
        gateways.get_gateway().next_channel(request_id=verification.request_id)
    except NoMoreChannels:
        pass  # the provider moved on by itself already: show the call
    except RequestNotFound:
        transition_if_allowed(
            verification,
            Status.EXPIRED,
            reason="provider: not found or expired",
            failure_reason="This code has expired. Ask for a new code.",
        )
        return verification
    except PermanentGatewayError as error:
        logger.warning("next channel refused for %s: %s", verification.pk, error.message)
        return verification
    verification_voice_started(verification, reason=reason)
    return verification


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
            failure_reason="This code has expired. Ask for a new code.",
        )
    return verification


def verification_advance(*, verification_id: UUID) -> Verification:
    verification = Verification.objects.get(pk=verification_id)
    return verification_refresh(verification=verification)


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
        gateways.get_gateway().cancel(request_id=request_id)
    except (RequestNotFound, PermanentGatewayError) as error:
        logger.info("provider cancel of %s not done: %s", request_id, error.message)


# --- the reconciler: deadlines that no task or callback honoured ----------------------------


def verification_reconcile(*, limit: int = 500) -> int:
    """Drive every live verification whose deadline has passed; return how many.

    Tasks and callbacks are the fast path. This sweep (Celery beat, or the embedded
    worker's timer) is what makes a lost broker message, a killed worker or a retry that
    a Redis restart dropped cost one sweep interval: each row is settled through the same
    services and idempotency as its task would have been.
    """
    now = timezone.now()
    due = list(
        Verification.objects.live()
        .filter(deadline_at__lte=now)
        .order_by("deadline_at")
        .values_list("pk", flat=True)[:limit]
    )
    for verification_id in due:
        try:
            _reconcile_one(verification_id, now=now)
        except Exception:
            # One bad row must not stop the sweep; it stays due and is tried next time.
            logger.exception("Could not reconcile verification %s", verification_id)
    return len(due)


def _reconcile_one(verification_id: UUID, *, now: Any) -> None:
    with transaction.atomic():
        # skip_locked: a task or another sweep holding the row is already driving it.
        verification = (
            Verification.objects.select_for_update(skip_locked=True)
            .filter(pk=verification_id, deadline_at__lte=now, status__in=LIVE_STATUSES)
            .first()
        )
        if verification is None:
            return
        if verification.status == Status.QUEUED:
            _reconcile_queued(verification, now=now)
        elif verification.status == Status.SENDING:
            _reconcile_sending(verification, now=now)
        elif verification.status == Status.CHECKING:
            # The code travelled only in the lost task: ask for it again, uncounted.
            back_to = Status.CALLING if verification.channel == "voice" else Status.SENT
            transition(
                verification, back_to, reason="check task lost (reconciler)", notice=CHECK_AGAIN
            )
        else:
            verification_refresh(verification=verification)


def _reconcile_queued(verification: Verification, *, now: Any) -> None:
    if now - verification.created_at > timedelta(seconds=settings.TWO_FACTOR_QUEUED_MAX_AGE):
        transition(
            verification,
            Status.FAILED,
            reason="never picked up by a worker (reconciler)",
            failure_reason=SEND_GAVE_UP,
        )
        return
    # Its task was lost or is stuck behind a backlog: a second copy is harmless (the
    # first delivery to claim the send wins, the other sends nothing).
    Verification.objects.filter(pk=verification.pk).update(
        deadline_at=now + timedelta(seconds=settings.TWO_FACTOR_QUEUED_GRACE)
    )
    transaction.on_commit(lambda: _enqueue("send", verification.pk))


def _reconcile_sending(verification: Verification, *, now: Any) -> None:
    started = verification.send_started_at or verification.updated_at
    # Re-sending is safe only while a request the lost attempt may have made is still
    # live at the provider: it then answers 409 and we adopt it. Later, a re-send could
    # be a second SMS, so the voter decides instead.
    window = timedelta(seconds=settings.TWO_FACTOR_CHANNEL_TIMEOUT)
    if now - started > window or (
        verification.send_attempts >= settings.TWO_FACTOR_MAX_SEND_ATTEMPTS
    ):
        transition(
            verification,
            Status.FAILED,
            reason="send attempt lost and can no longer be confirmed (reconciler)",
            failure_reason=SEND_UNCONFIRMED,
        )
        return
    Verification.objects.filter(pk=verification.pk).update(deadline_at=now + task_grace())
    claim = verification.send_claim
    # The same delivery id as the lost attempt, so the send's claim still matches.
    transaction.on_commit(lambda: _enqueue_send_as(verification.pk, claim))


# --- completion and the session flag ---------------------------------------------------------


def verification_complete(*, verification: Verification, session: Any) -> None:
    """Consume a verified verification for this session: rotate the key, set the flag."""
    from two_factor.session import session_mark_verified

    if verification.session_key_hash != session_key_hash(session.session_key or ""):
        raise VerificationRefused("This verification belongs to another session.")
    with transaction.atomic():
        # Two tabs following the link at once: the second finds it consumed.
        locked = Verification.objects.select_for_update().get(pk=verification.pk)
        if locked.status == Status.CONSUMED:
            raise AlreadyCompleted("This verification is already complete.")
        if locked.status != Status.VERIFIED:
            raise VerificationRefused("This verification isn't finished yet.")
        transition(
            verification, Status.CONSUMED, reason="session verified", consumed_at=timezone.now()
        )
    session.cycle_key()
    session_mark_verified(session=session, user=verification.user, number=verification.number)


# --- plumbing ------------------------------------------------------------------------------


def _tell_sockets_access_changed(user_id: Any) -> None:
    from two_factor.live import sockets_access_changed

    sockets_access_changed(user_id=user_id)


def _release_connection() -> None:
    """A provider call waits hundreds of milliseconds: give the database connection back
    to the pool meanwhile, so a worker's many threads hold connections only while they
    use them (docs/ARCHITECTURE.md, "Database connections and failures")."""
    if not connection.in_atomic_block:
        connection.close()


def _limit(events: list[tuple[str, str]]) -> None:
    try:
        limits_hit(events=events)
    except RateLimited as limited:
        from two_factor.signals import rate_limit_refused

        rate_limit_refused.send_robust(
            sender=RateLimited, name=limited.name, retry_after=limited.retry_after
        )
        raise VerificationRefused(limited.message, retry_after=limited.retry_after) from None


def _enqueue(operation: str, *args: Any) -> None:
    from tasks import verification as verification_tasks

    task = {
        "send": verification_tasks.send_code,
        "check": verification_tasks.check_code,
        "next_channel": verification_tasks.next_channel,
    }[operation]
    task.delay(*(str(a) if isinstance(a, UUID) else a for a in args))


def _enqueue_send_as(verification_id: UUID, delivery: str) -> None:
    from tasks import verification as verification_tasks

    verification_tasks.send_code.apply_async((str(verification_id),), task_id=delivery or None)


def _enqueue_cancel(verification: Verification) -> None:
    from tasks import verification as verification_tasks

    request_id = verification.request_id
    if request_id:
        transaction.on_commit(lambda: verification_tasks.cancel_request.delay(request_id))
