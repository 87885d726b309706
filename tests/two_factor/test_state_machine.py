"""The verification state machine: transition() is the one path for a status change."""

from __future__ import annotations

import pytest

from tests.two_factor.fixtures import *  # noqa: F403
from two_factor.models import (
    LIVE_STATUSES,
    TERMINAL_STATUSES,
    TRANSITIONS,
    Status,
    VerificationEvent,
)
from two_factor.services import IllegalTransition, transition

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
        (Status.SENT, Status.CALLING),
        (Status.SENT, Status.EXPIRED),
        (Status.SENT, Status.CANCELLED),
        (Status.CALLING, Status.CHECKING),
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
