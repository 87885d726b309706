"""How long what we learn while verifying a phone is kept (TWO_FACTOR_RETENTION_DAYS).

A verification holds a phone number and its audit trail holds network addresses: both
are kept for support and abuse investigations, then deleted. Once a verification has
ended and is older than the retention, it goes with its events and the provider's
callbacks about it; callbacks about no verification go once they are as old. A live
verification is never deleted (the reconciler ends it long before). Votes keep only a
keyed phone hash, and the account's own number stays while the account does.

Remembered devices go once they have ended (expired or forgotten): an ended device's
row verifies nothing, and its label and times are the voter's data.

The audit trail is append-only for people (the admin refuses to delete it); this sweep is
the one place its rows go, in bounded batches so each transaction stays short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from two_factor.models import (
    LIVE_STATUSES,
    ProviderCallback,
    TrustedDevice,
    Verification,
    VerificationEvent,
)

logger = logging.getLogger(__name__)

BATCH_SIZE = 500


@dataclass(frozen=True)
class Purged:
    verifications: int = 0
    events: int = 0
    callbacks: int = 0
    devices: int = 0


def retention_cutoff(*, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=settings.TWO_FACTOR_RETENTION_DAYS)


def records_purge(*, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> Purged:
    """Delete the verifications, events and callbacks older than the retention, and the
    remembered devices that have ended."""
    cutoff = retention_cutoff(now=now)
    verifications = events = callbacks = 0
    old = Verification.objects.filter(created_at__lt=cutoff).exclude(status__in=LIVE_STATUSES)
    while ids := list(old.values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            callbacks += ProviderCallback.objects.filter(verification_id__in=ids).delete()[0]
            events += VerificationEvent.objects.filter(verification_id__in=ids).delete()[0]
            verifications += Verification.objects.filter(pk__in=ids).delete()[0]
    orphans = ProviderCallback.objects.filter(verification__isnull=True, received_at__lt=cutoff)
    while orphan_ids := list(orphans.values_list("pk", flat=True)[:batch_size]):
        callbacks += ProviderCallback.objects.filter(pk__in=orphan_ids).delete()[0]
    ended = TrustedDevice.objects.filter(
        Q(revoked_at__isnull=False) | Q(expires_at__lte=now or timezone.now())
    )
    devices = 0
    while device_ids := list(ended.values_list("pk", flat=True)[:batch_size]):
        devices += TrustedDevice.objects.filter(pk__in=device_ids).delete()[0]
    purged = Purged(
        verifications=verifications, events=events, callbacks=callbacks, devices=devices
    )
    if devices:
        logger.info("retention: deleted %s ended remembered devices", devices)
    if verifications or callbacks:
        logger.info(
            "retention: deleted %s verifications, %s events, %s provider callbacks older "
            "than %s days",
            verifications,
            events,
            callbacks,
            settings.TWO_FACTOR_RETENTION_DAYS,
        )
    return purged
