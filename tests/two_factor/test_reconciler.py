"""The reconciler: every live verification past its deadline is driven on, once, through
the same services as its lost task, without a second SMS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import default_workflow
from two_factor import services
from two_factor.gateways.sandbox import SandboxGateway, sandbox_messages_for
from two_factor.models import Status, Verification

pytestmark = pytest.mark.django_db


def _ago(seconds: float) -> object:
    return timezone.now() - timedelta(seconds=seconds)


def _reconcile(capture: object) -> int:
    with capture(execute=True):  # type: ignore[operator]
        return services.verification_reconcile()


def test_a_queued_verification_whose_task_was_lost_is_sent_once(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks
):
    lost = make_verification(Status.QUEUED, created_at=_ago(40), deadline_at=_ago(1))

    assert _reconcile(django_capture_on_commit_callbacks) == 1

    lost.refresh_from_db()
    assert lost.status == Status.SENT
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["sms"]


def test_a_queued_verification_nobody_picked_up_for_too_long_fails_with_a_sentence(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks, settings
):
    stale = make_verification(
        Status.QUEUED,
        created_at=_ago(settings.TWO_FACTOR_QUEUED_MAX_AGE + 1),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    stale.refresh_from_db()
    assert stale.status == Status.FAILED
    assert stale.failure_reason == services.SEND_GAVE_UP
    assert sandbox_messages_for(NUMBER) == []


def test_a_send_whose_worker_died_before_the_provider_call_is_sent_once(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks
):
    orphan = make_verification(
        Status.SENDING,
        send_claim="task-of-a-killed-worker",
        send_attempts=0,
        send_started_at=_ago(50),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    orphan.refresh_from_db()
    assert orphan.status == Status.SENT
    assert orphan.send_attempts == 1
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_send_whose_worker_died_after_the_provider_call_adopts_the_live_request(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks
):
    orphan = make_verification(
        Status.SENDING,
        send_claim="task-of-a-killed-worker",
        send_attempts=1,
        send_started_at=_ago(50),
        deadline_at=_ago(1),
    )
    # The killed worker's call did reach the provider: the SMS went out.
    live_request = SandboxGateway().start(
        number=NUMBER, client_ref=orphan.pk.hex, workflow=default_workflow()
    )

    _reconcile(django_capture_on_commit_callbacks)

    orphan.refresh_from_db()
    assert orphan.status == Status.SENT
    assert orphan.request_id == live_request
    assert len(sandbox_messages_for(NUMBER)) == 1  # no second SMS


def test_a_lost_send_older_than_the_provider_request_fails_instead_of_texting_again(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks, settings
):
    orphan = make_verification(
        Status.SENDING,
        send_claim="task-of-a-killed-worker",
        send_attempts=1,
        send_started_at=_ago(settings.TWO_FACTOR_CHANNEL_TIMEOUT + 5),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    orphan.refresh_from_db()
    assert orphan.status == Status.FAILED
    assert orphan.failure_reason == services.SEND_UNCONFIRMED
    assert sandbox_messages_for(NUMBER) == []


def test_a_send_that_used_up_its_provider_calls_fails_with_a_sentence(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks, settings
):
    orphan = make_verification(
        Status.SENDING,
        send_claim="task-of-a-killed-worker",
        send_attempts=settings.TWO_FACTOR_MAX_SEND_ATTEMPTS,
        send_started_at=_ago(10),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    orphan.refresh_from_db()
    assert orphan.status == Status.FAILED
    assert sandbox_messages_for(NUMBER) == []


@pytest.mark.parametrize("channel", ["sms", "voice"])
def test_a_lost_check_asks_the_voter_for_the_code_again_without_counting_it(
    eager_tasks,
    phone,
    make_verification,
    django_capture_on_commit_callbacks,
    channel,
):
    checking = make_verification(
        Status.CHECKING,
        request_id="req-1",
        channel=channel,
        wrong_codes=1,
        channel_deadline=timezone.now() + timedelta(seconds=60),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    checking.refresh_from_db()
    assert checking.status == Status.SENT
    assert checking.channel == channel  # back on the step the code was typed on
    assert checking.wrong_codes == 1
    assert checking.notice == services.CHECK_AGAIN
    assert checking.deadline_at == checking.channel_deadline


def test_a_step_past_its_timeout_moves_to_the_workflows_next_channel(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks
):
    sent = make_verification(
        Status.SENT,
        request_id="req-1",
        channel="sms",
        channel_deadline=_ago(1),
        deadline_at=_ago(1),
    )

    _reconcile(django_capture_on_commit_callbacks)

    sent.refresh_from_db()
    assert (sent.status, sent.channel, sent.step) == (Status.SENT, "voice", 1)
    assert sent.deadline_at == sent.channel_deadline > timezone.now()


def test_rows_not_yet_due_and_ended_rows_are_left_alone(
    eager_tasks, phone, make_verification, django_capture_on_commit_callbacks, make_user
):
    waiting = make_verification(Status.QUEUED, deadline_at=timezone.now() + timedelta(seconds=30))
    ended = make_verification(Status.FAILED, owner=make_user("bob"), deadline_at=_ago(100))

    assert _reconcile(django_capture_on_commit_callbacks) == 0

    assert Verification.objects.get(pk=waiting.pk).status == Status.QUEUED
    assert Verification.objects.get(pk=ended.pk).status == Status.FAILED


def test_every_transition_sets_the_next_deadline_and_clears_the_notice(
    phone, make_verification, settings
):
    verification = make_verification(Status.QUEUED, notice="old news")

    services.transition(verification, Status.SENDING, send_claim="t")
    expected = timezone.now() + services.task_grace()
    assert abs((verification.deadline_at - expected).total_seconds()) < 5
    assert verification.notice == ""

    step_ends = timezone.now() + timedelta(seconds=settings.TWO_FACTOR_CHANNEL_TIMEOUT)
    services.transition(verification, Status.SENT, channel_deadline=step_ends)
    assert verification.deadline_at == step_ends

    services.transition(verification, Status.FAILED, failure_reason="x")
    assert verification.deadline_at is None
    assert Verification.objects.get(pk=verification.pk).deadline_at is None


def test_a_retry_moves_the_deadline_past_the_retry(phone, make_verification):
    verification = make_verification(Status.SENDING, deadline_at=_ago(1))

    services.verification_retry_at(verification_id=verification.pk, seconds=40)

    verification.refresh_from_db()
    assert verification.deadline_at > timezone.now() + timedelta(seconds=40)
