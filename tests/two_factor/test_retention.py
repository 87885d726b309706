"""Old verifications, their audit trail and the provider's callbacks are deleted after
TWO_FACTOR_RETENTION_DAYS, by a beat task; live ones and recent ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from pollstr.celery import app
from tests.two_factor.verifications import create_verification
from two_factor.models import ProviderCallback, Status, Verification, VerificationEvent
from two_factor.retention import records_purge


@pytest.fixture
def retention(settings):
    settings.TWO_FACTOR_RETENTION_DAYS = 30
    return timedelta(days=30)


def _made(user, status, age, **fields):
    verification = create_verification(user=user, status=status, **fields)
    Verification.objects.filter(pk=verification.pk).update(created_at=timezone.now() - age)
    return verification


def _callback(token, verification=None, age=timedelta()):
    return ProviderCallback.objects.create(
        token_id=token,
        request_id=token,
        verification=verification,
        type="summary",
        status="completed",
        body={},
        received_at=timezone.now() - age,
    )


def test_a_finished_verification_past_the_retention_goes_with_its_events_and_callbacks(
    user, retention
):
    old = _made(user, Status.CONSUMED, retention + timedelta(hours=1))
    _callback("cb-old", old)

    purged = records_purge()

    assert not Verification.objects.filter(pk=old.pk).exists()
    assert not VerificationEvent.objects.filter(verification_id=old.pk).exists()
    assert not ProviderCallback.objects.filter(token_id="cb-old").exists()
    assert (purged.verifications, purged.events, purged.callbacks) == (1, 1, 1)


def test_recent_and_live_verifications_stay(user, make_user, retention):
    recent = _made(user, Status.EXPIRED, retention - timedelta(hours=1))
    live = _made(make_user("bob"), Status.SENT, retention + timedelta(days=1))

    records_purge()

    assert Verification.objects.filter(pk__in=[recent.pk, live.pk]).count() == 2
    assert VerificationEvent.objects.filter(verification_id=recent.pk).exists()


def test_old_callbacks_about_no_verification_go_and_recent_ones_stay(db, retention):
    _callback("orphan-old", age=retention + timedelta(minutes=1))
    _callback("orphan-new", age=retention - timedelta(minutes=1))

    records_purge()

    assert list(ProviderCallback.objects.values_list("token_id", flat=True)) == ["orphan-new"]


def test_it_works_in_batches_until_nothing_old_is_left(user, retention):
    for _ in range(5):
        _made(user, Status.CANCELLED, retention * 2)

    assert records_purge(batch_size=2).verifications == 5
    assert records_purge(batch_size=2).verifications == 0


def test_beat_runs_the_registered_purge_task():
    schedule = django_settings.CELERY_BEAT_SCHEDULE["two_factor.purge_old_records"]

    assert schedule["task"] == "two_factor.purge_old_records"
    app.loader.import_default_modules()
    assert "two_factor.purge_old_records" in app.tasks


def test_the_task_purges(user, retention, eager_tasks):
    old = _made(user, Status.FAILED, retention * 2)
    from tasks.retention import purge_old_records

    assert purge_old_records.delay().get() == 1
    assert not Verification.objects.filter(pk=old.pk).exists()
