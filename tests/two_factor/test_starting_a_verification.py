"""Starting a verification (services.verification_start): what is stored, what is
sent once the transaction commits, and which earlier requests it replaces."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.phone_numbers import NUMBER, OTHER_NUMBER
from tests.two_factor.verifications import (
    client_session_key,
)
from two_factor import services
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.services import VerificationRefused, session_key_hash

pytestmark = pytest.mark.usefixtures("eager_tasks")


def _events(verification: Verification) -> list[tuple[str, str, str]]:
    return [(e.from_status, e.to_status, e.reason) for e in verification.events.all()]


def test_a_start_writes_its_row_and_first_event_in_one_statement(user, phone):
    if connection.vendor != "postgresql":
        pytest.skip("one-statement inserts are PostgreSQL's; SQLite saves the two rows")
    with CaptureQueriesContext(connection) as queries:
        verification = services.verification_start(
            user=user, session_key="key-1", ip="198.51.100.7"
        )

    inserts = [q["sql"] for q in queries.captured_queries if "INSERT INTO" in q["sql"]]
    assert len(inserts) == 1
    assert 'INSERT INTO "two_factor_verification"' in inserts[0]
    assert 'INSERT INTO "two_factor_verificationevent"' in inserts[0]
    assert _events(Verification.objects.get(pk=verification.pk)) == [
        ("", Status.QUEUED, "requested")
    ]


def test_start_queues_a_verification_with_an_audit_event(
    user, phone, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        verification = services.verification_start(
            user=user, session_key="key-1", ip="198.51.100.7"
        )

    verification.refresh_from_db()
    assert verification.status == Status.QUEUED
    assert verification.number == phone.number
    assert verification.session_key_hash == session_key_hash("key-1")
    assert "key-1" not in verification.session_key_hash
    event = verification.events.get()
    assert (event.from_status, event.to_status, event.reason, event.ip) == (
        "",
        Status.QUEUED,
        "requested",
        "198.51.100.7",
    )
    # The send is only enqueued once the transaction commits.
    assert callbacks
    assert sandbox_messages_for(NUMBER) == []


def test_start_sends_the_code_once_the_transaction_commits(
    user, phone, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        verification = services.verification_start(user=user, session_key="key-1", ip=None)

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.channel == "sms"
    assert verification.request_id
    assert verification.channel_deadline > timezone.now()
    assert [s for _, s, _ in _events(verification)] == [
        Status.QUEUED,
        Status.SENDING,
        Status.SENT,
    ]
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_start_with_a_typed_number_texts_it_and_keeps_the_stored_one(
    user, phone, django_capture_on_commit_callbacks
):
    typed = services.number_accept(user=user, raw_number=OTHER_NUMBER)
    with django_capture_on_commit_callbacks(execute=True):
        verification = services.verification_start(
            user=user, session_key="key-1", ip=None, number=typed
        )

    assert verification.number == OTHER_NUMBER
    assert len(sandbox_messages_for(OTHER_NUMBER)) == 1
    assert sandbox_messages_for(NUMBER) == []
    assert PhoneNumber.objects.get(user=user).number == NUMBER  # until the code is verified


def test_start_without_a_number_is_refused(user):
    with pytest.raises(VerificationRefused, match="Add your mobile number first"):
        services.verification_start(user=user, session_key="key-1", ip=None)

    assert not Verification.objects.exists()


def test_start_cancels_the_previous_live_verification(
    user, phone, make_verification, django_capture_on_commit_callbacks, settings
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    old = make_verification(Status.SENT, request_id="old-request")
    ended = make_verification(Status.FAILED)

    with django_capture_on_commit_callbacks():
        new = services.verification_start(user=user, session_key="key-2", ip="192.0.2.1")

    old.refresh_from_db()
    ended.refresh_from_db()
    assert old.status == Status.CANCELLED
    assert old.events.last().reason == "superseded by a new code request"
    assert ended.status == Status.FAILED
    assert list(Verification.objects.live()) == [new]


def test_a_second_start_within_the_cooldown_is_refused_with_the_wait(
    user, phone, make_verification, settings
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    live = make_verification(Status.SENT, request_id="live-request")

    with pytest.raises(VerificationRefused) as refused:
        services.verification_start(user=user, session_key="key-2", ip="192.0.2.1")

    assert 1 <= refused.value.retry_after <= 30
    assert "You can ask for a new one in" in refused.value.message
    live.refresh_from_db()
    assert live.status == Status.SENT
    assert Verification.objects.count() == 1


def test_start_does_not_touch_another_users_verification(
    user, make_user, phone, make_verification, django_capture_on_commit_callbacks
):
    other = make_user("bob")
    theirs = make_verification(Status.SENT, owner=other, number=OTHER_NUMBER)

    with django_capture_on_commit_callbacks():
        services.verification_start(user=user, session_key="key-1", ip=None)

    theirs.refresh_from_db()
    assert theirs.status == Status.SENT


def test_the_session_key_is_stored_only_as_a_hash(user, phone, client):
    key = client_session_key(client)

    verification = services.verification_start(user=user, session_key=key, ip=None)

    stored = Verification.objects.filter(pk=verification.pk).values().get()
    assert key not in str(stored)
