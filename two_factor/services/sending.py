"""Starting a verification and sending its code: the web side (start, resend) and the
worker side (send, retries, giving up). Idempotent: a redelivered send never texts twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.translation import gettext_noop, ngettext
from phonenumber_field.phonenumber import PhoneNumber as ParsedNumber

from pollstr.client_ip import client_network
from pollstr.languages import supported_language, verify_locale
from two_factor.channels import channel_get, workflow_for, workflow_steps
from two_factor.gateways.errors import (
    ConcurrentRequest,
    PermanentGatewayError,
    TransientGatewayError,
)
from two_factor.models import (
    LIVE_OF_USER_LOCKED,
    LIVE_STATUSES,
    PHONE_NUMBER_OF_USER,
    VERIFICATION_BY_ID,
    VERIFICATION_LOCKED,
    Status,
    Verification,
    VerificationEvent,
    session_key_hash,
)
from two_factor.numbers import number_destination
from two_factor.services.budget import budget_reserve, governor_check, governor_judge
from two_factor.services.delivery import (
    _describe,
    _enqueue,
    _provider,
    _release_connection,
)
from two_factor.services.refusals import VerificationRefused, _limit
from two_factor.services.steps import (
    verification_provider_cancel,
    verification_provider_cancel_gave_up,
)
from two_factor.services.transitions import (
    _announce,
    task_grace,
    transition,
    transition_if_allowed,
    transition_unless_changed,
)

GOVERNOR_PAUSED = gettext_noop(
    "Codes to numbers like yours are paused for a while because of unusual traffic. "
    "Please ask for a new code later."
)
SEND_GAVE_UP = gettext_noop(
    "We couldn't reach our verification provider after several tries. "
    "Please ask for a new code in a minute."
)


def verification_start(
    *,
    user: User,
    session_key: str,
    ip: str | None,
    number: ParsedNumber | None = None,
    locale: str | None = None,
) -> Verification:
    """Queue a new verification for this session: of `number` (typed, accepted by
    `number_accept`, pending until verified) or else of the account's number, whose code
    speaks `locale` (one of LANGUAGES; None: the active language).

    One start at a time per user: the user's row is locked first, so parallel clicks
    queue up here and each sees the verification the one before it created (the
    cooldown then refuses it). The unique constraint on live verifications backs this.
    """
    key_hash = session_key_hash(session_key)
    try:
        with transaction.atomic():
            verification = _start_locked(
                user=user,
                key_hash=key_hash,
                ip=ip,
                number=number,
                locale=supported_language(locale or translation.get_language()),
            )
    except IntegrityError:
        raise VerificationRefused(
            gettext_noop("A code is already on its way. Wait a moment, then try again."),
            retry_after=5,
        ) from None
    return verification


def _start_locked(
    *,
    user: User,
    key_hash: str,
    ip: str | None,
    number: ParsedNumber | None,
    locale: str,
) -> Verification:
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).only("pk"))
    # Not `user.phone_number`: a cached relation may predate a bind in this request.
    phone = PHONE_NUMBER_OF_USER.first(user.pk)
    if number is None:
        if phone is None:
            raise VerificationRefused(gettext_noop("Add your mobile number first."))
        number = phone.number
    live = LIVE_OF_USER_LOCKED.all(user.pk)
    if any(old.status == Status.CHECKING for old in live):
        raise VerificationRefused(
            gettext_noop("We're checking the code you entered. Wait a moment, then try again."),
            retry_after=2,
        )
    wait = live[0].resend_available_in() if live else 0
    if wait:
        # The same cooldown whichever button asked: "Text me a code" or "Send a new code".
        raise VerificationRefused(
            ngettext(
                "A code is on its way. You can ask for a new one in %(wait)d second.",
                "A code is on its way. You can ask for a new one in %(wait)d seconds.",
                wait,
            )
            % {"wait": wait},
            retry_after=wait,
        )
    country, prefix = number_destination(number)
    governor_check(country=country, prefix=prefix)
    limits = [
        ("start_per_user", str(user.pk)),
        ("start_per_number", number.as_e164),
        ("start_per_session", key_hash),
        ("start_global_daily", "all"),
    ]
    # The per-IP limit is for accounts that never proved a phone (the shape of SMS
    # pumping: fresh accounts, many numbers). A voter who once verified is not locked
    # out by the office or carrier NAT they share an address with.
    if phone is None or phone.verified_at is None:
        limits.append(("start_per_ip", ip or "unknown"))
        limits.append(("start_per_network", client_network(ip)))
    _limit(limits)
    # Last: a code refused above costs nothing from the day's budget.
    budget_reserve(country=country)
    # One live verification per user: a new start supersedes the old one. Its provider
    # request is cancelled by the new one's send, before that send starts (see
    # verification_send), not by a task of its own that could run beside it.
    for old in live:
        transition(old, Status.CANCELLED, reason="superseded by a new code request", ip=ip)
    superseded = [old.request_id for old in live if old.request_id]
    now = timezone.now()
    verification = Verification(
        user=user,
        session_key_hash=key_hash,
        number=number,
        is_resend=bool(live),
        # Chosen now, for the number's region, and kept: a setting changed meanwhile
        # never changes the steps of a verification already on its way.
        workflow=list(workflow_for(country=country)),
        country=country,
        prefix=prefix,
        locale=locale,
        created_at=now,
        deadline_at=now + timedelta(seconds=settings.TWO_FACTOR_QUEUED_GRACE),
    )
    # The row and its first audit event: one statement on PostgreSQL.
    VerificationEvent.objects.create_with_first(
        verification,
        VerificationEvent(
            verification=verification, to_status=Status.QUEUED, reason="requested", ip=ip
        ),
    )
    # Announced first, so with an in-process worker "queued" is logged before "sending".
    transaction.on_commit(
        lambda: _announce(verification, from_status="", to_status=Status.QUEUED, reason="requested")
    )
    transaction.on_commit(lambda: _enqueue("send", verification.pk, superseded))
    # Nothing is published: no page can listen on a verification this request just made
    # up the id of (its code page connects after the redirect and gets "queued" then).
    return verification


def verification_resend(
    *, verification: Verification, session_key: str, ip: str | None
) -> Verification:
    # A new code to the same number: it may still be pending (not the account's yet).
    return verification_start(
        user=verification.user, session_key=session_key, ip=ip, number=verification.number
    )


def verification_send(
    *, verification_id: UUID, delivery: str, cancel_first: Sequence[str] = ()
) -> Verification:
    """Worker side of a start: ask the provider to send the code. Idempotent.

    `delivery` names the task delivery (Celery's task id, the same across its retries
    and redeliveries): a duplicate task with another id finds the claim and sends
    nothing. Raises TransientGatewayError for the task to retry; permanent errors end
    the verification as failed here.

    `cancel_first`: the provider requests of the verifications this one superseded,
    cancelled before the start, on the first attempt only (a retry or redelivery would
    find them gone, or cancel one this verification has adopted since). One after the
    other, never side by side: a start that met such a request still live (Verify allows
    one per number) would adopt it, and a cancel landing a moment later would leave this
    verification on a dead request. If the provider keeps the request (it refuses a
    cancel in a request's first 30 s), the start adopts it, and nothing cancels it any
    more.
    """
    verification, go = _claim(verification_id, delivery)
    if not go:
        return verification
    if cancel_first and verification.send_attempts == 1:
        _release_connection()
        for request_id in cancel_first:
            _cancel_superseded(request_id)
    if verification.country:
        # The governor judges what was sent lately (at most every few seconds per
        # prefix), and a destination it paused gets no code, even one asked for before.
        governor_judge(country=verification.country, prefix=verification.prefix)
        try:
            governor_check(country=verification.country, prefix=verification.prefix)
        except VerificationRefused as paused:
            # Stored without the wait (a sentence with a number in it has no msgid, so
            # it could not be shown in the voter's language); the audit keeps it.
            transition_if_allowed(
                verification,
                Status.FAILED,
                reason=f"paused by the conversion governor: {paused.message}",
                failure_reason=GOVERNOR_PAUSED,
            )
            return verification
    # Chosen at the start; a row made some other way (before channels were rows, a bulk
    # insert) gets its region's workflow now.
    workflow = list(verification.workflow) or list(workflow_for(country=verification.country))
    gateway = _provider()
    _release_connection()
    try:
        started = gateway.start(
            number=verification.number.as_e164,
            client_ref=verification.pk.hex,
            workflow=workflow_steps(workflow),
            locale=verify_locale(verification.locale),
        )
        request_id, check_url = str(started), getattr(started, "check_url", None) or ""
        reason = f"sent via {gateway.name}"
    except ConcurrentRequest as conflict:
        if not conflict.live_request_id:
            raise TransientGatewayError(conflict.message) from conflict
        # Our earlier try reached the provider (or the SDK re-sent it), or another
        # verification's request to this number is live: adopt it, don't resend. The code
        # went to the number, so whoever enters it proves they hold the phone.
        request_id, check_url = conflict.live_request_id, ""
        reason = "adopted the provider's live request"
        _release_request(request_id, keep=verification)
    except PermanentGatewayError as error:
        transition_if_allowed(
            verification, Status.FAILED, reason=error.message, failure_reason=error.message
        )
        return verification
    now = timezone.now()
    first = workflow[0]
    transition_if_allowed(
        verification,
        Status.SENT,
        reason=reason,
        workflow=workflow,
        request_id=request_id,
        check_url=check_url,
        step=0,
        channel=first,
        sent_at=now,
        channel_deadline=channel_get(first).deadline(now=now),
    )
    return verification


def _cancel_superseded(request_id: str) -> None:
    """Best effort, and never a reason not to send: a request the provider keeps is
    adopted by the start that follows, or expires by itself (its trail says so)."""
    try:
        verification_provider_cancel(request_id=request_id)
    except TransientGatewayError as error:
        verification_provider_cancel_gave_up(request_id=request_id, error=error)


def _release_request(request_id: str, *, keep: Verification) -> None:
    """Other live verifications on an adopted provider request end: only one row may
    settle it (a callback for it must never verify someone who was not sent its code)."""
    others = Verification.objects.live().filter(request_id=request_id).exclude(pk=keep.pk)
    for other in others:
        # Not cancelled at the provider: the request lives on in `keep`.
        transition_if_allowed(
            other, Status.CANCELLED, reason="provider request taken over by a newer one"
        )


def _attempt(verification: Verification) -> dict[str, Any]:
    """A send attempt's count and re-armed deadline, written before the provider call: a
    worker killed during it leaves a row the reconciler re-drives once its time is up."""
    now = timezone.now()
    return {
        "send_attempts": verification.send_attempts + 1,
        "send_started_at": verification.send_started_at or now,
        "deadline_at": now + task_grace(),
    }


def _claim(verification_id: UUID, delivery: str) -> tuple[Verification, bool]:
    """The row, and whether this delivery goes on to the provider (it claimed the row,
    or re-drives its own claim); a failed row it gave up on is returned as not going on.

    The usual case, a queued row nobody has claimed, is one read and one statement that
    claims it only while it is still as read (two_factor.services.transitions
    `transition_unless_changed`); any other case, or a row that changed since the read
    (a duplicate delivery claimed it first), is decided under the row's lock."""
    verification = VERIFICATION_BY_ID.get(verification_id)
    if (
        verification.status == Status.QUEUED
        and not verification.request_id
        and transition_unless_changed(
            verification,
            Status.SENDING,
            reason="worker picked it up",
            send_claim=delivery,
            **_attempt(verification),
        )
    ):
        return verification, True
    with transaction.atomic():
        # Read under the row's lock, and claimed in the same transaction: a duplicate
        # delivery waits here, then finds the claim.
        verification = VERIFICATION_LOCKED.get(verification_id)
        if verification.request_id or verification.status not in (Status.QUEUED, Status.SENDING):
            return verification, False  # the provider already has this request
        attempt = _attempt(verification)
        if verification.status == Status.QUEUED:
            # The claim and the first attempt's count in one write: only a queued row's
            # claimer counts, and nobody else counts a queued row's attempts.
            transition(
                verification,
                Status.SENDING,
                reason="worker picked it up",
                send_claim=delivery,
                locked=True,
                **attempt,
            )
        elif verification.send_claim != delivery:
            return verification, False  # another delivery owns this send
        elif verification.send_attempts >= settings.TWO_FACTOR_MAX_SEND_ATTEMPTS:
            transition(
                verification,
                Status.FAILED,
                reason=f"gave up after {verification.send_attempts} provider calls",
                failure_reason=SEND_GAVE_UP,
                locked=True,
            )
            return verification, False
        else:
            # Re-driven in `sending` (a lost attempt's task id, the same claim).
            Verification.objects.filter(pk=verification.pk).update(**attempt)
            verification.__dict__.update(attempt)  # the row as written
    return verification, True


def verification_send_gave_up(*, verification_id: UUID, error: Exception) -> None:
    """The task ran out of retries (provider errors, or our own database)."""
    verification = VERIFICATION_BY_ID.get(verification_id)
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
