"""Moving between the steps of a verification: another channel instead, deadlines
that move it on or end it, asking for a new code, and cancelling."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.phone_numbers import NUMBER
from two_factor import services
from two_factor.gateways.sandbox import SandboxGateway, sandbox_messages_for
from two_factor.models import Status, Verification
from two_factor.services import VerificationRefused

pytestmark = pytest.mark.usefixtures("eager_tasks")


def test_switching_to_the_call_moves_the_row_to_the_voice_step_and_the_provider_calls(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=sent, channel="voice")

    sent.refresh_from_db()
    assert (sent.status, sent.channel, sent.step) == (Status.SENT, "voice", 1)
    assert sent.channel_deadline > timezone.now()
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["voice", "sms"]
    assert sent.events.last().channel == "voice"


def test_switching_to_the_channel_already_running_is_refused_with_what_it_does(
    phone, make_verification
):
    verification = make_verification(Status.SENT, request_id="r", channel="voice")

    with pytest.raises(VerificationRefused, match="We're already sending your code that way"):
        services.verification_switch_channel(verification=verification, channel="voice")


@pytest.mark.parametrize("channel", ["whatsapp", "pigeon", ""])
def test_switching_to_a_channel_not_left_in_the_workflow_is_refused(
    phone, make_verification, channel
):
    verification = make_verification(Status.SENT, request_id="r", channel="sms")

    with pytest.raises(VerificationRefused, match="isn't available now"):
        services.verification_switch_channel(verification=verification, channel=channel)


@pytest.mark.parametrize("status", [Status.QUEUED, Status.VERIFIED, Status.EXPIRED])
def test_switching_without_a_code_on_its_way_is_refused(phone, make_verification, status):
    verification = make_verification(status)

    with pytest.raises(VerificationRefused, match="no code on its way"):
        services.verification_switch_channel(verification=verification, channel="voice")


def test_refresh_moves_to_the_next_step_then_expired_as_deadlines_pass(phone, make_verification):
    past = timezone.now() - timedelta(seconds=1)
    verification = make_verification(Status.SENT, request_id="r", channel="sms")
    Verification.objects.filter(pk=verification.pk).update(channel_deadline=past)
    verification.refresh_from_db()

    services.verification_refresh(verification=verification)

    assert (verification.status, verification.channel, verification.step) == (
        Status.SENT,
        "voice",
        1,
    )
    assert verification.channel_deadline > timezone.now()

    Verification.objects.filter(pk=verification.pk).update(channel_deadline=past)
    verification.refresh_from_db()
    services.verification_refresh(verification=verification)

    verification.refresh_from_db()
    assert verification.status == Status.EXPIRED
    assert verification.failure_reason == "This code has expired. Ask for a new code."


def test_refresh_before_the_deadline_changes_nothing(phone, make_verification):
    future = timezone.now() + timedelta(seconds=60)
    verification = make_verification(Status.SENT, request_id="r", channel_deadline=future)

    services.verification_refresh(verification=verification)

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.events.count() == 1


def test_a_code_submitted_after_the_call_timed_out_is_refused(phone, make_verification):
    past = timezone.now() - timedelta(seconds=1)
    verification = make_verification(
        Status.SENT, request_id="r", channel="voice", channel_deadline=past
    )

    with pytest.raises(VerificationRefused, match="has ended"):
        services.verification_submit_code(verification=verification, code="123456", ip=None)

    verification.refresh_from_db()
    assert verification.status == Status.EXPIRED


def test_resend_within_the_cooldown_is_refused_with_the_wait(phone, make_verification, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    verification = make_verification(Status.SENT, request_id="r", sent_at=timezone.now())

    with pytest.raises(VerificationRefused) as refused:
        services.verification_resend(verification=verification, session_key="key-1", ip=None)

    assert refused.value.retry_after in (29, 30)
    assert f"in {refused.value.retry_after} seconds" in refused.value.message
    assert Verification.objects.count() == 1


def test_resend_after_the_cooldown_starts_a_new_verification(
    phone, make_verification, settings, django_capture_on_commit_callbacks
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    sent_at = timezone.now() - timedelta(seconds=31)
    verification = make_verification(Status.SENT, request_id="r", sent_at=sent_at)

    with django_capture_on_commit_callbacks():
        new = services.verification_resend(verification=verification, session_key="key-1", ip=None)

    assert new.pk != verification.pk
    verification.refresh_from_db()
    assert verification.status == Status.CANCELLED


def test_resend_of_an_ended_verification_needs_no_cooldown(
    phone, make_verification, settings, django_capture_on_commit_callbacks
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 30
    verification = make_verification(Status.FAILED, sent_at=timezone.now())

    with django_capture_on_commit_callbacks():
        new = services.verification_resend(verification=verification, session_key="key-1", ip=None)

    assert new.status == Status.QUEUED


def test_cancel_ends_a_live_verification_and_its_provider_request(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.verification_cancel(verification=sent, ip="192.0.2.1")

    sent.refresh_from_db()
    assert sent.status == Status.CANCELLED
    assert sent.events.last().reason == "cancelled by the user"
    assert SandboxGateway().emulator.status(sent.request_id) is None


def test_cancel_of_an_ended_verification_does_nothing(phone, make_verification):
    verification = make_verification(Status.VERIFIED)

    services.verification_cancel(verification=verification, ip=None)

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED


def test_refresh_long_after_a_deadline_counts_each_step_from_the_one_before(
    three_step_workflow, phone, make_verification, settings
):
    settings.TWO_FACTOR_CHANNEL_TIMEOUT = 180
    # The SMS step ended 200 s ago: the WhatsApp step ran 180 s and ended 20 s ago.
    sms_ended = timezone.now() - timedelta(seconds=200)
    verification = make_verification(
        Status.SENT, request_id="r", channel="sms", channel_deadline=sms_ended
    )

    services.verification_refresh(verification=verification)

    verification.refresh_from_db()
    assert (verification.channel, verification.step) == ("voice", 2)
    assert verification.channel_deadline == sms_ended + timedelta(seconds=360)
    steps = list(
        verification.events.filter(to_status=Status.SENT).values_list("channel", flat=True)
    )
    assert steps == ["sms", "whatsapp", "voice"]
