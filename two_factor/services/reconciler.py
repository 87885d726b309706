"""The reconciler: deadlines that no task or callback honoured
(docs/ARCHITECTURE.md, "Deadlines and the reconciler")."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from two_factor.models import (
    LIVE_STATUSES,
    Status,
    Verification,
)
from two_factor.services.checking import CHECK_AGAIN
from two_factor.services.delivery import _enqueue, _enqueue_send_as
from two_factor.services.sending import SEND_GAVE_UP
from two_factor.services.steps import verification_refresh
from two_factor.services.transitions import task_grace, transition

logger = logging.getLogger(__name__)


SEND_UNCONFIRMED = gettext_noop(
    "We couldn't confirm that your code was sent. Please ask for a new code."
)


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
            transition(
                verification, Status.SENT, reason="check task lost (reconciler)", notice=CHECK_AGAIN
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
