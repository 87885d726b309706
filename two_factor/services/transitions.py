"""The one path for a status change: check the state machine, save, audit, set the next
deadline, publish and announce (docs/ARCHITECTURE.md, "The verification state machine")."""

from __future__ import annotations

import copy
import logging
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pollstr.db.prepared import guarded_update, save_fields
from two_factor.live import Committed
from two_factor.models import (
    TRANSITIONS,
    VERIFICATION_LOCKED,
    Status,
    Verification,
    VerificationEvent,
)

logger = logging.getLogger(__name__)


class IllegalTransition(Exception):
    pass


def transition(
    verification: Verification,
    to: Status,
    *,
    reason: str = "",
    ip: str | None = None,
    locked: bool = False,
    **fields: Any,
) -> Verification:
    """Move `verification` to `to`, saving `fields` with it, auditing and publishing.

    The state machine is checked against the row as stored, not as the caller last saw
    it, and concurrent deliveries (a worker and a callback) serialise on the row's lock.
    On PostgreSQL, when the caller's copy is still the stored row (every column as it
    read it), that takes one statement: the write and its audit event happen only if the
    row is unchanged, under the lock the write itself takes (`_transition_unless_changed`).
    Otherwise the row is read again under its lock and the state machine judged on what
    it holds. `locked=True` says the caller read `verification` with
    `select_for_update()` in the transaction it is still in: that row is the stored one,
    and is not read again.
    Every transition sets the row's next deadline (see `deadline_for`) and replaces
    the voter's notice, unless the caller passes them.

    Inside a caller's transaction no savepoint is taken: the state machine refuses
    (IllegalTransition) before anything is written, so a refusal leaves the caller's
    transaction usable, and any later error rolls the caller's work back with it.
    """
    current = None
    if not locked:
        current = _transition_unless_changed(verification, to, reason=reason, ip=ip, **fields)
    if current is None:
        if transaction.get_connection().in_atomic_block:
            current = _transition(verification, to, reason=reason, ip=ip, locked=locked, **fields)
        else:
            with transaction.atomic():
                current = _transition(
                    verification, to, reason=reason, ip=ip, locked=locked, **fields
                )
    # Hand the caller the fresh row so it never acts on a stale status.
    if current is not verification:
        verification.__dict__.update(current.__dict__)
    return verification


def transition_unless_changed(
    verification: Verification, to: Status, *, reason: str, ip: str | None = None, **fields: Any
) -> bool:
    """`transition` in one statement, if the stored row is still exactly the caller's copy
    and the copy allows `to`: True, the caller's copy now the row as written. False,
    having written nothing: the caller reads the row under its lock and decides on what
    it holds (its own refusals, which `transition` would not know).

    Inside the caller's transaction the write holds the row's lock until it ends, as a
    `select_for_update()` would, and a refusal the caller raises after it rolls it back
    with its audit event, its push and its announcement."""
    current = _transition_unless_changed(verification, to, reason=reason, ip=ip, **fields)
    if current is None:
        return False
    verification.__dict__.update(current.__dict__)
    return True


def _transition(
    verification: Verification,
    to: Status,
    *,
    reason: str,
    ip: str | None,
    locked: bool,
    **fields: Any,
) -> Verification:
    current = verification if locked else VERIFICATION_LOCKED.get(verification.pk)
    if to not in TRANSITIONS[current.status]:
        raise IllegalTransition(f"{current.status} → {to} is not allowed")
    from_status = current.status
    # Only what changed: the UPDATE stays small whatever the row holds. save() as Django
    # does it, signals included, with the statement compiled once (pollstr/db/prepared.py).
    save_fields(current, _changed(current, to, fields))
    event = _event(current, from_status=from_status, reason=reason, ip=ip)
    # On PostgreSQL the insert also reads the audit trail up to this event, for the push.
    trail = VerificationEvent.objects.append(event)
    _after_commit(current, event, trail, from_status=from_status, reason=reason)
    return current


def _transition_unless_changed(
    verification: Verification, to: Status, *, reason: str, ip: str | None, **fields: Any
) -> Verification | None:
    """`_transition` in one statement, without reading the row first, if the stored row
    is exactly the caller's copy: its write matches only then, and the audit event is
    inserted only after that write (pollstr/db/prepared.py `guarded_update`). The row's
    lock is the write's own; outside a transaction the statement commits by itself.

    None, having written nothing, when the copy does not allow `to`, the row changed
    since the caller read it, or the statement is not possible here (not PostgreSQL,
    save signals with receivers): `_transition` then decides on the row as stored."""
    if verification._state.adding or to not in TRANSITIONS[verification.status]:
        return None
    current = copy.copy(verification)
    update = guarded_update(current, _changed(current, to, dict(fields)), read=verification)
    if update is None:
        return None
    event = _event(current, from_status=verification.status, reason=reason, ip=ip)
    with transaction.mark_for_rollback_on_error(update.using):
        trail = VerificationEvent.objects.append_after(event, update)
    if trail is None:
        return None
    _after_commit(current, event, trail, from_status=verification.status, reason=reason)
    return current


def _changed(current: Verification, to: Status, fields: dict[str, Any]) -> list[str]:
    """Set the new status and `fields` on `current`; the names of the fields to save."""
    current.status = to
    fields.setdefault("notice", "")
    fields.setdefault("switching_to", "")
    for name, value in fields.items():
        setattr(current, name, value)
    if "deadline_at" not in fields:
        current.deadline_at = deadline_for(current, now=timezone.now())
    return ["status", "deadline_at", "updated_at", *fields]


def _event(
    current: Verification, *, from_status: str, reason: str, ip: str | None
) -> VerificationEvent:
    return VerificationEvent(
        verification=current,
        from_status=from_status,
        to_status=current.status,
        channel=current.channel,
        reason=reason,
        ip=ip,
    )


def _after_commit(
    current: Verification,
    event: VerificationEvent,
    trail: list[VerificationEvent] | None,
    *,
    from_status: str,
    reason: str,
) -> None:
    """Publish and announce the transition once it commits (at once outside a transaction)."""
    # The pages are shown this row as this transition saved it (a copy: the caller may
    # go on changing its own), not read again after the commit. A later write to the row
    # in the same transaction that changes what the page shows must publish itself.
    committed = Committed(copy.copy(current), event_id=event.pk, events=trail)
    to_status = current.status
    transaction.on_commit(lambda: _publish(current.pk, as_of=committed))
    transaction.on_commit(
        lambda: _announce(current, from_status=from_status, to_status=to_status, reason=reason)
    )


def _publish(verification_id: UUID, *, as_of: Committed | None = None) -> None:
    from two_factor.live import verification_publish

    try:
        verification_publish(verification_id=verification_id, as_of=as_of)
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
    if verification.status == Status.SENT:
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


def verification_note(verification: Verification, *, reason: str, notice: str = "") -> None:
    """Record something that happened to a verification without changing its status (an
    audit event from and to the same status), and tell the voter when there is a notice."""
    with transaction.atomic():
        current = VERIFICATION_LOCKED.get(verification.pk)
        VerificationEvent.objects.create(
            verification=current,
            from_status=current.status,
            to_status=current.status,
            channel=current.channel,
            reason=reason,
        )
        if notice:
            Verification.objects.filter(pk=current.pk).update(notice=notice, switching_to="")
            transaction.on_commit(lambda: _publish(current.pk))
