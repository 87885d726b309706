"""A new code request and the provider request it supersedes: cancelled first, then the
start, one after the other (two_factor/services/sending.py, `verification_send`).

Side by side (a cancel task beside the new send, as before), the new start could meet the
old request still live, adopt it, and be left on a dead request when the cancel landed a
moment later: the voter's "Call me instead" then ended the new code as expired.
"""

from __future__ import annotations

from typing import Any

import pytest

from two_factor import services
from two_factor.gateways.sandbox import SandboxGateway, sandbox_fail_next
from two_factor.models import Status, Verification

pytestmark = pytest.mark.usefixtures("eager_tasks")


@pytest.fixture
def no_cooldown(settings: Any) -> None:
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0


def _queued_sends(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """What the start hands to the queue (the operations and their arguments)."""
    enqueued: list[tuple[Any, ...]] = []
    monkeypatch.setattr("two_factor.services.sending._enqueue", lambda *call: enqueued.append(call))
    return enqueued


def test_a_new_start_leaves_the_old_request_to_its_own_send_not_to_a_task_beside_it(
    sent: Verification, user, no_cooldown, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    enqueued = _queued_sends(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        new = services.verification_start(user=user, session_key="key-2", ip=None)

    assert enqueued == [("send", new.pk, [sent.request_id])]


def test_whatever_order_the_queued_work_runs_in_the_new_code_stays_live(
    sent: Verification, user, no_cooldown, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as queued:
        new = services.verification_start(user=user, session_key="key-2", ip=None)
    # A worker may take the new send before what was queued ahead of it (the race that
    # left a new code on a request cancelled a moment after its start adopted it).
    for work in reversed(queued):
        work()

    new.refresh_from_db()
    assert new.status == Status.SENT
    services.verification_next_channel(verification_id=new.pk, reason="asked for a call")
    new.refresh_from_db()
    assert (new.status, new.channel) == (Status.SENT, "voice")


def test_the_send_cancels_the_superseded_request_then_gets_a_request_of_its_own(
    sent: Verification, user, no_cooldown, django_capture_on_commit_callbacks
) -> None:
    old_request = sent.request_id
    with django_capture_on_commit_callbacks(execute=True):
        new = services.verification_start(user=user, session_key="key-2", ip=None)

    new.refresh_from_db()
    assert new.status == Status.SENT
    assert new.request_id != old_request
    assert SandboxGateway().emulator.get(old_request) is None  # cancelled: gone
    # The new request goes on to its next channel: nothing cancels it behind its back.
    services.verification_next_channel(verification_id=new.pk, reason="asked for a call")
    new.refresh_from_db()
    assert (new.status, new.channel) == (Status.SENT, "voice")


def test_a_request_the_provider_keeps_is_adopted_and_stays_usable(
    sent: Verification, user, no_cooldown, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # Verify refuses a cancel in a request's first 30 s: the old request lives on.
    monkeypatch.setattr(SandboxGateway, "cancel", _refused_cancel)
    old_request = sent.request_id
    with django_capture_on_commit_callbacks(execute=True):
        new = services.verification_start(user=user, session_key="key-2", ip=None)

    new.refresh_from_db()
    assert (new.status, new.request_id) == (Status.SENT, old_request)
    services.verification_next_channel(verification_id=new.pk, reason="asked for a call")
    new.refresh_from_db()
    assert (new.status, new.channel) == (Status.SENT, "voice")
    # The old verification's trail says its request was kept.
    sent.refresh_from_db()
    assert sent.status == Status.CANCELLED
    assert "provider cancel not done" in sent.events.last().reason


def _refused_cancel(self: SandboxGateway, *, request_id: str) -> None:
    from two_factor.gateways.errors import RequestNotFound

    raise RequestNotFound("This request can no longer be cancelled.")


@pytest.mark.usefixtures("eager_retries")
def test_a_retried_send_does_not_cancel_again(
    sent: Verification, user, no_cooldown, django_capture_on_commit_callbacks
) -> None:
    sandbox_fail_next("start")  # the first attempt's start fails; the task retries
    with django_capture_on_commit_callbacks(execute=True):
        new = services.verification_start(user=user, session_key="key-2", ip=None)

    new.refresh_from_db()
    assert (new.status, new.send_attempts) == (Status.SENT, 2)
    assert new.request_id != sent.request_id
    # Cancelled once, by the first attempt: the second found nothing to say about it.
    reasons = [event.reason for event in sent.events.all()]
    assert not [reason for reason in reasons if "provider cancel not done" in reason]
