"""The verification state machine: transition() is the one path for a status change."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from two_factor.live import verification_group
from two_factor.models import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Status,
    VerificationEvent,
)
from two_factor.services import IllegalTransition, transition
from two_factor.signals import verification_transitioned

pytestmark = pytest.mark.usefixtures("two_factor_settings")

LEGAL = [(source, target) for source, targets in TRANSITIONS.items() for target in targets]
ILLEGAL = [
    (source, target) for source in Status for target in Status if target not in TRANSITIONS[source]
]


def _pair_id(pair: tuple[str, str]) -> str:
    return f"{pair[0]}->{pair[1]}"


def test_every_status_has_an_entry_in_the_transition_table():
    assert set(TRANSITIONS) == set(Status)


def test_the_design_diagram_edges_are_all_legal():
    # The diagram in docs/ARCHITECTURE.md, edge by edge.
    edges = {
        (Status.QUEUED, Status.SENDING),
        (Status.SENDING, Status.SENT),
        (Status.SENDING, Status.FAILED),
        (Status.SENT, Status.SENT),  # the workflow's next channel
        (Status.SENT, Status.EXPIRED),
        (Status.SENT, Status.CANCELLED),
        (Status.SENT, Status.CHECKING),
        (Status.CHECKING, Status.VERIFIED),
        (Status.CHECKING, Status.SENT),
        (Status.CHECKING, Status.FAILED),
        (Status.VERIFIED, Status.CONSUMED),
    }
    assert edges <= set(LEGAL)


def test_terminal_statuses_are_exactly_the_dead_ends():
    dead_ends = {Status.CONSUMED, Status.FAILED, Status.EXPIRED, Status.CANCELLED}
    assert set(TERMINAL_STATUSES) == dead_ends
    assert not TERMINAL_STATUSES & LIVE_STATUSES


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[_pair_id(p) for p in LEGAL])
def test_a_legal_transition_saves_the_status_and_writes_one_event(
    make_verification, source, target
):
    verification = make_verification(source)
    before = VerificationEvent.objects.filter(verification=verification).count()

    returned = transition(verification, target, reason="because a test said so", ip="203.0.113.9")

    assert returned is verification
    assert verification.status == target
    verification.refresh_from_db()
    assert verification.status == target
    events = VerificationEvent.objects.filter(verification=verification)
    assert events.count() == before + 1
    event = events.last()
    assert (event.from_status, event.to_status) == (source, target)
    assert event.reason == "because a test said so"
    assert event.ip == "203.0.113.9"


def test_a_transition_saves_the_extra_fields_with_the_status(make_verification):
    verification = make_verification(Status.SENDING)

    transition(verification, Status.SENT, request_id="req-1", channel="sms")

    verification.refresh_from_db()
    assert (verification.status, verification.request_id, verification.channel) == (
        Status.SENT,
        "req-1",
        "sms",
    )


def test_a_transition_writes_only_what_it_changes_and_takes_no_savepoint_inside_a_transaction(
    make_verification,
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    verification = make_verification(Status.SENDING)
    with CaptureQueriesContext(connection) as captured:
        transition(verification, Status.SENT, request_id="req-2")
    statements = [query["sql"] for query in captured.captured_queries]
    update = next(sql for sql in statements if "UPDATE" in sql)
    written = update.split(" SET ", 1)[1].split(" WHERE ", 1)[0]
    assert '"request_id"' in written
    assert '"status"' in written
    assert '"session_key_hash"' not in written
    assert '"number"' not in written
    assert not any("SAVEPOINT" in sql for sql in statements)
    # On PostgreSQL the write, guarded by the row as the caller read it, and its audit
    # event are one statement; elsewhere lock, update, audit event: three statements.
    assert len(statements) == (1 if connection.vendor == "postgresql" else 3), statements


def test_a_refused_transition_leaves_the_callers_transaction_usable(make_verification):
    from django.db import transaction

    verification = make_verification(Status.SENT)
    with transaction.atomic():
        with pytest.raises(IllegalTransition):
            transition(verification, Status.SENDING)
        # The caller goes on in the same transaction, and its work commits.
        transition(verification, Status.CHECKING, reason="after a refusal")
    verification.refresh_from_db()
    assert verification.status == Status.CHECKING
    assert verification.events.filter(reason="after a refusal").count() == 1


def test_a_row_the_caller_locked_is_not_read_again(make_verification):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    verification = make_verification(Status.SENT)
    with transaction.atomic():
        locked = type(verification).objects.select_for_update().get(pk=verification.pk)
        with CaptureQueriesContext(connection) as captured:
            transition(locked, Status.CHECKING, locked=True)
    assert not any(q["sql"].startswith("SELECT") for q in captured.captured_queries)
    verification.refresh_from_db()
    assert verification.status == Status.CHECKING


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[_pair_id(p) for p in ILLEGAL])
def test_an_illegal_transition_is_refused_and_changes_nothing(make_verification, source, target):
    verification = make_verification(source)
    events_before = VerificationEvent.objects.count()

    with pytest.raises(IllegalTransition):
        transition(verification, target, reason="should not happen", failure_reason="nope")

    assert verification.status == source
    verification.refresh_from_db()
    assert verification.status == source
    assert verification.failure_reason == ""
    assert VerificationEvent.objects.count() == events_before


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATUSES))
def test_a_terminal_status_accepts_no_transition_at_all(make_verification, terminal):
    verification = make_verification(terminal)
    for target in Status:
        with pytest.raises(IllegalTransition):
            transition(verification, target)
    verification.refresh_from_db()
    assert verification.status == terminal
    assert verification.events.count() == 1


def test_the_state_machine_is_checked_against_the_stored_row_not_a_stale_copy(
    make_verification,
):
    verification = make_verification(Status.SENT)
    stale = type(verification).objects.get(pk=verification.pk)
    transition(verification, Status.EXPIRED)

    # `stale` still says "sent", but the row has ended: sent → checking is refused.
    with pytest.raises(IllegalTransition):
        transition(stale, Status.CHECKING)
    verification.refresh_from_db()
    assert verification.status == Status.EXPIRED


def test_a_stored_event_cannot_be_saved_again(make_verification):
    event = make_verification().events.get()
    event.reason = "rewritten history"

    with pytest.raises(ValueError, match="append-only"):
        event.save()

    event.refresh_from_db()
    assert event.reason == "made by a test"


def test_an_event_cannot_be_deleted(make_verification):
    event = make_verification().events.get()

    with pytest.raises(ValueError, match="append-only"):
        event.delete()

    assert VerificationEvent.objects.filter(pk=event.pk).exists()


_EVENT_FIELDS = ("pk", "verification_id", "from_status", "to_status", "channel", "reason")


def _trail(events: list[VerificationEvent]) -> list[tuple[Any, ...]]:
    return [(*(getattr(e, name) for name in _EVENT_FIELDS), e.ip, e.created_at) for e in events]


def test_appending_an_event_returns_the_trail_up_to_it_on_postgresql(make_verification):
    """On PostgreSQL the event's insert reads the trail with it (one statement); the
    trail is the one a fresh read gives, in the trail's order, the new event last."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    verification = make_verification(Status.SENDING)
    verification.events.create(from_status=Status.QUEUED, to_status=Status.SENDING, ip="::1")
    event = VerificationEvent(
        verification=verification,
        from_status=Status.SENDING,
        to_status=Status.SENT,
        channel="sms",
        reason="sent via a test",
        ip="203.0.113.9",
    )

    with CaptureQueriesContext(connection) as captured:
        trail = VerificationEvent.objects.append(event)

    assert len(captured.captured_queries) == 1
    stored = list(verification.events.all())
    assert event.pk == stored[-1].pk
    assert _trail([stored[-1]]) == _trail([event])
    assert (stored[-1].reason, stored[-1].ip) == ("sent via a test", "203.0.113.9")
    if connection.vendor == "postgresql":
        assert trail is not None
        assert _trail(trail) == _trail(stored)
        assert trail[-1] is event
        assert len(stored) == 3
    else:
        assert trail is None
    with pytest.raises(ValueError, match="append-only"):
        VerificationEvent.objects.append(event)


def test_a_transition_pushes_without_reading_the_trail_again_on_postgresql(
    make_verification, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    verification = make_verification(Status.SENT, channel="sms")
    layer, channel = _page_listening(verification)

    with (
        CaptureQueriesContext(connection) as captured,
        django_capture_on_commit_callbacks(execute=True),
    ):
        transition(verification, Status.CHECKING, reason="code submitted")

    message = async_to_sync(_receive)(layer, channel)
    assert message["version"] == verification.events.last().pk
    assert 'data-status="checking"' in message["html"]
    statements = [query["sql"] for query in captured.captured_queries]
    # On PostgreSQL the guarded write and the event with the trail are one statement;
    # elsewhere lock, update, the event, and the push reads the trail.
    assert len(statements) == (1 if connection.vendor == "postgresql" else 4), statements


# --- after the commit: published to the page, announced to observers ------------------------


def test_a_committed_transition_is_published_to_the_verifications_sockets(
    make_verification, django_capture_on_commit_callbacks
):
    verification = make_verification(Status.SENT, channel="sms")
    layer, channel = _page_listening(verification)

    with django_capture_on_commit_callbacks(execute=True):
        transition(verification, Status.SENT, reason="test", channel="voice", step=1)

    message = async_to_sync(_receive)(layer, channel)
    assert message["type"] == "verification.changed"
    assert 'data-status="sent" data-channel="voice"' in message["html"]


def test_nothing_is_published_before_the_commit(
    make_verification, django_capture_on_commit_callbacks
):
    verification = make_verification(Status.SENT)

    with django_capture_on_commit_callbacks() as callbacks:
        transition(verification, Status.CHECKING, reason="test")

    # Publishing and announcing wait for the commit (a rolled-back change is never shown).
    assert len(callbacks) == 2


def test_a_committed_transition_is_announced_with_its_statuses_and_reason(
    make_verification, django_capture_on_commit_callbacks
):
    verification = make_verification(Status.SENT)
    heard: list[dict[str, Any]] = []

    def listener(sender: Any, **kwargs: Any) -> None:
        heard.append(kwargs)

    verification_transitioned.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            transition(
                verification, Status.SENT, reason="the SMS step timed out", channel="voice", step=1
            )
    finally:
        verification_transitioned.disconnect(listener)

    [announced] = heard
    assert announced["verification"].pk == verification.pk
    assert announced["verification"].channel == "voice"
    assert (announced["from_status"], announced["to_status"], announced["reason"]) == (
        Status.SENT,
        Status.SENT,
        "the SMS step timed out",
    )


def _page_listening(verification: Any) -> tuple[Any, str]:
    """A channel in the verification's group, as an open code page's socket is."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(verification_group(verification.pk), channel)
    return layer, channel


async def _receive(layer: Any, channel: str) -> dict[str, Any]:
    return await asyncio.wait_for(layer.receive(channel), timeout=5)
