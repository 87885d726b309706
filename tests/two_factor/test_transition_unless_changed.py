"""A transition from the caller's copy of the row, in one statement on PostgreSQL: it
writes only while the stored row is that copy, column for column; a copy that is stale
in any column, or changed in memory, falls back to reading the row under its lock, so
the state machine and everything the transition computes always judge the stored row."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import close_old_connections, connection, transaction
from django.db.models import signals
from django.test.utils import CaptureQueriesContext

from two_factor.models import Status, Verification, VerificationEvent
from two_factor.services import IllegalTransition, transition

pytestmark = pytest.mark.usefixtures("two_factor_settings")


@pytest.fixture
def postgresql(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement transition is PostgreSQL's (make test runs it there)")


def _statements(call: Any) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        call()
    return [query["sql"] for query in captured.captured_queries]


def _locked_read(statements: list[str]) -> bool:
    return any(sql.startswith("SELECT") and sql.endswith("FOR UPDATE") for sql in statements)


def test_a_current_copy_moves_in_one_statement_as_the_locked_path_would(
    postgresql, make_verification, make_user
):
    fast = make_verification(Status.SENDING)
    slow = make_verification(Status.SENDING, owner=make_user("another"))
    fields = {"request_id": "req-9", "channel": "sms", "step": 0, "reason": "sent via a test"}

    statements = _statements(lambda: transition(fast, Status.SENT, **fields))
    with transaction.atomic():
        locked = Verification.objects.select_for_update().get(pk=slow.pk)
        transition(locked, Status.SENT, locked=True, **fields)

    assert len(statements) == 1, statements
    assert not _locked_read(statements)
    stored_fast = Verification.objects.get(pk=fast.pk)
    stored_slow = Verification.objects.get(pk=slow.pk)
    for field in Verification._meta.concrete_fields:
        if field.name in ("id", "user", "created_at", "updated_at", "deadline_at"):
            continue
        assert getattr(stored_fast, field.attname) == getattr(stored_slow, field.attname), field
    # The caller's copy is the row as written, its new timestamp included.
    assert fast.updated_at == stored_fast.updated_at
    assert fast.deadline_at == stored_fast.deadline_at
    event = stored_fast.events.last()
    assert (event.from_status, event.to_status, event.channel, event.reason) == (
        Status.SENDING,
        Status.SENT,
        "sms",
        "sent via a test",
    )


def test_a_copy_stale_in_any_column_is_not_taken_for_the_stored_row(
    postgresql, make_verification, django_capture_on_commit_callbacks
):
    verification = make_verification(Status.SENT, channel="sms")
    # Another writer moved a column the status does not show: the copy is stale.
    Verification.objects.filter(pk=verification.pk).update(wrong_codes=2)

    with django_capture_on_commit_callbacks(execute=True):
        statements = _statements(
            lambda: transition(verification, Status.CHECKING, reason="code submitted")
        )

    # The guarded write matched nothing; the row was read under its lock and moved.
    assert _locked_read(statements), statements
    assert verification.wrong_codes == 2  # the caller now holds the stored row
    stored = Verification.objects.get(pk=verification.pk)
    assert (stored.status, stored.wrong_codes) == (Status.CHECKING, 2)
    assert stored.events.filter(to_status=Status.CHECKING).count() == 1


def test_a_copy_changed_in_memory_only_is_not_written(postgresql, make_verification):
    verification = make_verification(Status.SENT, channel="sms")
    verification.channel = "voice"  # never saved

    statements = _statements(lambda: transition(verification, Status.CHECKING))

    assert _locked_read(statements), statements
    stored = Verification.objects.get(pk=verification.pk)
    assert stored.channel == "sms"
    assert stored.events.last().channel == "sms"


def test_a_stale_copy_that_allows_the_move_is_refused_by_the_stored_row(
    postgresql, make_verification
):
    verification = make_verification(Status.SENT, channel="sms")
    stale = Verification.objects.get(pk=verification.pk)
    transition(verification, Status.CANCELLED, reason="the voter cancelled")
    events = VerificationEvent.objects.filter(verification=verification).count()

    with pytest.raises(IllegalTransition):
        transition(stale, Status.CHECKING)

    assert Verification.objects.get(pk=verification.pk).status == Status.CANCELLED
    assert VerificationEvent.objects.filter(verification=verification).count() == events


def test_save_signals_with_receivers_are_sent_by_the_locked_path(postgresql, make_verification):
    verification = make_verification(Status.SENT, channel="sms")
    seen: list[str] = []

    def saved(sender: Any, instance: Verification, **kwargs: Any) -> None:
        seen.append(instance.status)

    signals.post_save.connect(saved, sender=Verification)
    try:
        statements = _statements(lambda: transition(verification, Status.CHECKING))
    finally:
        signals.post_save.disconnect(saved, sender=Verification)

    assert seen == [Status.CHECKING]
    assert _locked_read(statements), statements


@pytest.mark.django_db(transaction=True)
def test_copies_racing_to_the_same_move_make_it_once(two_factor_settings, make_verification):
    if connection.vendor != "postgresql":
        pytest.skip("the one-statement transition is PostgreSQL's (make test runs it there)")
    verification = make_verification(Status.SENT, channel="sms")
    racers = 8
    barrier = threading.Barrier(racers)
    outcomes: list[str] = []

    def race() -> None:
        copy = Verification.objects.get(pk=verification.pk)
        try:
            barrier.wait()
            transition(copy, Status.CHECKING, reason="code submitted")
            outcomes.append("moved")
        except IllegalTransition:
            outcomes.append("refused")
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(outcomes) == ["moved"] + ["refused"] * (racers - 1)
    stored = Verification.objects.get(pk=verification.pk)
    assert stored.status == Status.CHECKING
    assert stored.events.filter(to_status=Status.CHECKING).count() == 1
