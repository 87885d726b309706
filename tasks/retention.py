"""The retention sweep, run by Celery beat (settings.CELERY_BEAT_SCHEDULE): deletes what
is older than TWO_FACTOR_RETENTION_DAYS (two_factor/retention.py).

Idempotent: a redelivered or doubled sweep finds less, or nothing, to delete."""

from __future__ import annotations

from celery import Task, shared_task

from two_factor.retention import records_purge

PURGE_OLD_RECORDS = "two_factor.purge_old_records"


@shared_task(name=PURGE_OLD_RECORDS, bind=True, acks_late=True, ignore_result=True)
def purge_old_records(self: Task) -> int:
    return records_purge().verifications
