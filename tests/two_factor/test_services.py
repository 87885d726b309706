"""two_factor.services: the business rules of a verification, one function at a time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from tests.two_factor.fixtures import *  # noqa: F403
from tests.two_factor.fixtures import (
    NUMBER,
    OTHER_NUMBER,
    client_session_key,
    latest_code,
    start_verification,
    wrong_code_for,
)
from two_factor import gateways, services
from two_factor.gateways import (
    Blocked,
    ConcurrentRequest,
    GatewayMisconfigured,
    InsufficientBalance,
    InvalidCode,
    InvalidNumber,
    TransientGatewayError,
)
from two_factor.gateways.sandbox import SandboxGateway, sandbox_fail_next, sandbox_messages_for
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.services import (
    VerificationRefused,
    session_key_hash,
)
from two_factor.session import SESSION_KEY, session_is_verified

pytestmark = pytest.mark.usefixtures("eager_tasks")


class FakeGateway:
    """A gateway whose every call raises `error`: the service is the subject here."""

    name = "fake"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[str] = []

    def start(self, *, number: str, client_ref: str) -> str:
        self.calls.append("start")
        raise self.error

    def check(self, *, request_id: str, code: str) -> None:
        self.calls.append("check")
        raise self.error

    def cancel(self, *, request_id: str) -> None:
        self.calls.append("cancel")

    def next_channel(self, *, request_id: str) -> None:
        self.calls.append("next_channel")
        raise self.error


@pytest.fixture
def fake_gateway(monkeypatch: pytest.MonkeyPatch):
    def install(error: Exception) -> FakeGateway:
        gateway = FakeGateway(error)
        monkeypatch.setattr(gateways, "get_gateway", lambda: gateway)
        return gateway

    return install


def _events(verification: Verification) -> list[tuple[str, str, str]]:
    return [(e.from_status, e.to_status, e.reason) for e in verification.events.all()]


# --- verification_start ----------------------------------------------------------------


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


# --- rate limits ---------------------------------------------------------------------------


def _tighten(settings: Any, name: str) -> None:
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, name: (1, 600)}


def _start(user, session_key: str, ip: str) -> Verification:
    return services.verification_start(user=user, session_key=session_key, ip=ip)


def _assert_limited(refusal: VerificationRefused) -> None:
    assert refusal.message.startswith("Too many attempts. Try again in ")
    # A sliding window reopens within two windows (the refused event counts too).
    assert 1 <= refusal.retry_after <= 2 * 600


def test_the_per_user_limit_refuses_another_start_from_any_session_or_ip(user, phone, settings):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    _tighten(settings, "start_per_user")
    _start(user, "key-1", "192.0.2.1")

    with pytest.raises(VerificationRefused) as refused:
        _start(user, "key-2", "192.0.2.2")

    _assert_limited(refused.value)
    assert Verification.objects.count() == 1


def test_the_per_number_limit_follows_the_number_to_another_account(
    user, make_user, phone, settings
):
    _tighten(settings, "start_per_number")
    _start(user, "key-1", "192.0.2.1")
    phone.delete()
    other = make_user("bob")
    PhoneNumber.objects.create(user=other, number=NUMBER)

    with pytest.raises(VerificationRefused) as refused:
        _start(other, "key-2", "192.0.2.2")

    _assert_limited(refused.value)


def test_the_per_session_limit_refuses_a_second_start_in_the_same_session(
    user, make_user, phone, settings
):
    _tighten(settings, "start_per_session")
    other = make_user("bob")
    PhoneNumber.objects.create(user=other, number=OTHER_NUMBER)
    _start(user, "shared-key", "192.0.2.1")

    with pytest.raises(VerificationRefused) as refused:
        _start(other, "shared-key", "192.0.2.2")
    _assert_limited(refused.value)
    # Another session is not affected.
    assert _start(other, "key-3", "192.0.2.2").status == Status.QUEUED


def test_the_per_ip_limit_refuses_other_accounts_from_the_same_address(
    user, make_user, phone, settings
):
    _tighten(settings, "start_per_ip")
    other = make_user("bob")
    PhoneNumber.objects.create(user=other, number=OTHER_NUMBER)
    _start(user, "key-1", "192.0.2.1")

    with pytest.raises(VerificationRefused) as refused:
        _start(other, "key-2", "192.0.2.1")
    _assert_limited(refused.value)
    assert _start(other, "key-3", "192.0.2.99").status == Status.QUEUED


def test_the_global_limit_refuses_everyone(user, make_user, phone, settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "start_global_daily": (1, 86400),
    }
    other = make_user("bob")
    PhoneNumber.objects.create(user=other, number=OTHER_NUMBER)
    _start(user, "key-1", "192.0.2.1")

    with pytest.raises(VerificationRefused) as refused:
        _start(other, "key-2", "192.0.2.2")

    assert refused.value.message.startswith("Too many attempts. Try again in ")
    assert 1 <= refused.value.retry_after <= 2 * 86400


def test_a_start_refused_by_a_limit_does_not_cancel_the_live_verification(user, phone, settings):
    _tighten(settings, "start_per_user")
    _start(user, "key-1", "192.0.2.1")
    live = Verification.objects.get()

    with pytest.raises(VerificationRefused):
        _start(user, "key-1", "192.0.2.1")

    live.refresh_from_db()
    assert live.status == Status.QUEUED


# --- verification_send ---------------------------------------------------------------------


def test_send_moves_a_queued_verification_to_sent_with_the_provider_id(phone, make_verification):
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.send_claim == "task-1"
    assert verification.send_attempts == 1
    assert verification.request_id == sandbox_messages_for(NUMBER)[0]["request_id"]
    assert verification.sent_at is not None


def test_two_deliveries_with_different_ids_send_one_sms(phone, make_verification):
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")
    services.verification_send(verification_id=verification.pk, delivery="task-2")

    assert len(sandbox_messages_for(NUMBER)) == 1
    verification.refresh_from_db()
    assert verification.send_claim == "task-1"


def test_a_delivery_that_finds_another_claim_on_the_send_sends_nothing(phone, make_verification):
    verification = make_verification(Status.SENDING, send_claim="task-1")

    services.verification_send(verification_id=verification.pk, delivery="task-2")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING
    assert verification.send_attempts == 0
    assert sandbox_messages_for(NUMBER) == []


def test_a_redelivery_after_the_request_id_is_set_sends_nothing(phone, make_verification):
    verification = make_verification()
    services.verification_send(verification_id=verification.pk, delivery="task-1")
    verification.refresh_from_db()
    request_id = verification.request_id

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.request_id == request_id
    assert verification.send_attempts == 1
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_live_request_at_the_provider_is_adopted_not_resent(phone, make_verification):
    verification = make_verification()
    # Our earlier try reached the provider but its answer was lost.
    live_id = SandboxGateway().start(number=NUMBER, client_ref=verification.pk.hex)

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.request_id == live_id
    assert verification.events.last().reason == "adopted the provider's live request"
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_conflict_without_the_live_id_is_raised_as_transient(
    phone, make_verification, fake_gateway
):
    fake_gateway(ConcurrentRequest(live_request_id=None))
    verification = make_verification()

    with pytest.raises(TransientGatewayError):
        services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING


def test_a_transient_error_is_raised_for_the_retry_and_the_send_stays_sending(
    phone, make_verification
):
    verification = make_verification()
    sandbox_fail_next("start", 1)

    with pytest.raises(TransientGatewayError):
        services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING
    assert verification.send_attempts == 1
    assert sandbox_messages_for(NUMBER) == []

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.send_attempts == 2
    assert len(sandbox_messages_for(NUMBER)) == 1


@pytest.mark.parametrize(
    "error", [InvalidNumber, GatewayMisconfigured, InsufficientBalance, Blocked]
)
def test_a_permanent_error_fails_the_verification_with_a_readable_reason(
    phone, make_verification, fake_gateway, error
):
    fake_gateway(error(detail="HTTP 4xx from the provider"))
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason == error.default_message
    assert "HTTP" not in verification.failure_reason
    assert verification.request_id == ""


def test_giving_up_on_a_send_fails_it_with_a_sentence(phone, make_verification):
    verification = make_verification(Status.SENDING, send_claim="task-1")

    services.verification_send_gave_up(
        verification_id=verification.pk, error=TransientGatewayError(detail="timeout")
    )

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason.startswith("We couldn't reach the SMS provider")
    assert "gave up" in verification.events.last().reason


# --- verification_submit_code and verification_check ---------------------------------------


@pytest.fixture
def sent(user, phone, client, django_capture_on_commit_callbacks) -> Verification:
    """A verification whose SMS the sandbox has sent."""
    return start_verification(client, user, django_capture_on_commit_callbacks)


def _submit(verification: Verification, code: str, capture) -> Verification:
    with capture(execute=True):
        services.verification_submit_code(verification=verification, code=code, ip="192.0.2.1")
    verification.refresh_from_db()
    return verification


def test_a_wrong_code_goes_back_to_sent_and_counts(sent, django_capture_on_commit_callbacks):
    verification = _submit(sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks)

    assert verification.status == Status.SENT
    assert verification.wrong_codes == 1
    assert verification.wrong_codes_left == 2
    assert [s for _, s, _ in _events(verification)][-2:] == [Status.CHECKING, Status.SENT]


def test_a_wrong_code_during_the_call_goes_back_to_calling(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.verification_call_instead(verification=sent)
    sent.refresh_from_db()
    assert sent.status == Status.CALLING

    verification = _submit(sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks)

    assert verification.status == Status.CALLING
    assert verification.wrong_codes == 1


def test_the_third_wrong_code_fails_the_verification(sent, django_capture_on_commit_callbacks):
    wrong = wrong_code_for(latest_code())
    for _ in range(3):
        verification = _submit(sent, wrong, django_capture_on_commit_callbacks)

    assert verification.status == Status.FAILED
    assert verification.wrong_codes == 3
    assert verification.failure_reason == "That code was wrong too many times. Ask for a new code."


def test_the_local_count_ends_it_even_when_the_provider_would_allow_more(
    sent, django_capture_on_commit_callbacks
):
    # Two wrong codes counted here that the provider never saw (e.g. a previous request).
    Verification.objects.filter(pk=sent.pk).update(wrong_codes=2)
    sent.refresh_from_db()

    verification = _submit(sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks)

    assert verification.status == Status.FAILED
    assert verification.wrong_codes == 3
    assert verification.events.last().reason == "too many wrong codes (local count)"
    # The provider's request is cancelled too, so its code can't be used any more.
    assert SandboxGateway().emulator.status(verification.request_id) is None


def test_the_right_code_verifies_the_verification_and_the_number(
    sent, phone, django_capture_on_commit_callbacks
):
    verification = _submit(sent, latest_code(), django_capture_on_commit_callbacks)

    assert verification.status == Status.VERIFIED
    assert verification.verified_at is not None
    phone.refresh_from_db()
    assert phone.verified_at is not None


def test_a_code_for_an_expired_request_expires_the_verification(
    sent, django_capture_on_commit_callbacks
):
    code = latest_code()
    SandboxGateway().cancel(request_id=sent.request_id)  # gone at the provider

    verification = _submit(sent, code, django_capture_on_commit_callbacks)

    assert verification.status == Status.EXPIRED
    assert verification.failure_reason == "This code has expired. Ask for a new code."


def test_a_check_redelivered_after_it_settled_changes_nothing(
    sent, django_capture_on_commit_callbacks
):
    verification = _submit(sent, latest_code(), django_capture_on_commit_callbacks)
    events = verification.events.count()

    services.verification_check(verification_id=verification.pk, code="000000")

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert verification.events.count() == events


def test_a_permanent_error_on_check_fails_with_its_sentence(phone, make_verification, fake_gateway):
    fake_gateway(GatewayMisconfigured(detail="401"))
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms")

    services.verification_check(verification_id=verification.pk, code="123456")

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason == GatewayMisconfigured.default_message


def test_a_wrong_code_from_any_gateway_counts_locally(phone, make_verification, fake_gateway):
    gateway = fake_gateway(InvalidCode())
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms", wrong_codes=1)

    services.verification_check(verification_id=verification.pk, code="123456")

    verification.refresh_from_db()
    assert (verification.status, verification.wrong_codes) == (Status.SENT, 2)
    assert gateway.calls == ["check"]


def test_giving_up_on_a_check_lets_the_person_try_again(phone, make_verification):
    verification = make_verification(Status.CHECKING, request_id="r", channel="voice")

    services.verification_check_gave_up(
        verification_id=verification.pk, error=TransientGatewayError()
    )

    verification.refresh_from_db()
    assert verification.status == Status.CALLING


@pytest.mark.parametrize(
    "code",
    [
        "",
        "   ",
        "abc",
        "12345",
        "1234567",
        "12345a",
        "١٢٣٤٥٦",
        "１２３４５６",
        "12.345",
        "<script>",
    ],
)
def test_a_code_of_the_wrong_shape_is_refused_with_the_sentence(sent, code):
    with pytest.raises(VerificationRefused) as refused:
        services.verification_submit_code(verification=sent, code=code, ip=None)

    assert refused.value.message == "Enter the 6-digit code from the SMS or call."
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    assert sent.wrong_codes == 0


def test_the_sentence_follows_the_configured_code_length(sent, settings):
    settings.TWO_FACTOR_CODE_LENGTH = 8

    with pytest.raises(VerificationRefused, match="Enter the 8-digit code"):
        services.verification_submit_code(verification=sent, code="123456", ip=None)


@pytest.mark.parametrize("template", ["{} {}", " {}-{} ", "{}\t{}", "{} - {}"])
def test_spaces_and_dashes_in_a_code_are_ignored(
    sent, django_capture_on_commit_callbacks, template
):
    code = latest_code()

    verification = _submit(
        sent, template.format(code[:3], code[3:]), django_capture_on_commit_callbacks
    )

    assert verification.status == Status.VERIFIED


def test_a_code_is_not_taken_while_the_last_one_is_being_checked(phone, make_verification):
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms")

    with pytest.raises(VerificationRefused, match="still checking your last code"):
        services.verification_submit_code(verification=verification, code="123456", ip=None)


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (Status.QUEUED, "Your code hasn't been sent yet."),
        (Status.SENDING, "Your code hasn't been sent yet."),
        (Status.VERIFIED, "This number is already verified."),
        (Status.FAILED, "This code request has ended. Ask for a new code."),
        (Status.CANCELLED, "This code request has ended. Ask for a new code."),
    ],
)
def test_a_code_is_refused_when_the_verification_takes_none(
    phone, make_verification, status, sentence
):
    verification = make_verification(status)

    with pytest.raises(VerificationRefused) as refused:
        services.verification_submit_code(verification=verification, code="123456", ip=None)

    assert refused.value.message.startswith(sentence)
    verification.refresh_from_db()
    assert verification.status == status


def test_codes_are_rate_limited_per_user(sent, settings, django_capture_on_commit_callbacks):
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, "check_per_user": (1, 60)}
    wrong = wrong_code_for(latest_code())
    _submit(sent, wrong, django_capture_on_commit_callbacks)

    with pytest.raises(VerificationRefused) as refused:
        services.verification_submit_code(verification=sent, code=wrong, ip=None)

    assert refused.value.message.startswith("Too many attempts.")
    assert refused.value.retry_after >= 1
    sent.refresh_from_db()
    assert sent.status == Status.SENT


# --- channels, deadlines, resend, cancel ---------------------------------------------------


def test_call_instead_moves_to_calling_and_the_provider_calls(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.verification_call_instead(verification=sent)

    sent.refresh_from_db()
    assert sent.status == Status.CALLING
    assert sent.channel == "voice"
    assert sent.channel_deadline > timezone.now()
    assert [m["channel"] for m in sandbox_messages_for(NUMBER)] == ["voice", "sms"]


def test_call_instead_while_calling_is_refused(phone, make_verification):
    verification = make_verification(Status.CALLING, request_id="r", channel="voice")

    with pytest.raises(VerificationRefused, match="We're already calling you"):
        services.verification_call_instead(verification=verification)


@pytest.mark.parametrize("status", [Status.QUEUED, Status.VERIFIED, Status.EXPIRED])
def test_call_instead_without_a_code_on_its_way_is_refused(phone, make_verification, status):
    verification = make_verification(status)

    with pytest.raises(VerificationRefused, match="no code on its way"):
        services.verification_call_instead(verification=verification)


def test_refresh_moves_sent_to_calling_then_expired_as_deadlines_pass(phone, make_verification):
    past = timezone.now() - timedelta(seconds=1)
    verification = make_verification(Status.SENT, request_id="r", channel="sms")
    Verification.objects.filter(pk=verification.pk).update(channel_deadline=past)
    verification.refresh_from_db()

    services.verification_refresh(verification=verification)

    assert verification.status == Status.CALLING
    assert verification.channel == "voice"
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
        Status.CALLING, request_id="r", channel="voice", channel_deadline=past
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


# --- verification_complete -----------------------------------------------------------------


@pytest.fixture
def session() -> SessionStore:
    store = SessionStore()
    store["marker"] = "kept"
    store.save()
    return store


def test_completing_from_another_session_is_refused(user, phone, make_verification, session):
    verification = make_verification(Status.VERIFIED, session_key="some-other-session")

    with pytest.raises(VerificationRefused, match="belongs to another session"):
        services.verification_complete(verification=verification, session=session)

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert SESSION_KEY not in session


@pytest.mark.parametrize("status", [Status.SENT, Status.CHECKING, Status.FAILED])
def test_completing_an_unverified_verification_is_refused(
    user, phone, make_verification, session, status
):
    verification = make_verification(status, session_key=session.session_key)

    with pytest.raises(VerificationRefused, match="isn't finished yet"):
        services.verification_complete(verification=verification, session=session)

    assert SESSION_KEY not in session


def test_completing_consumes_it_rotates_the_session_key_and_sets_the_flag(
    user, phone, make_verification, session
):
    PhoneNumber.objects.filter(pk=phone.pk).update(verified_at=timezone.now())
    verification = make_verification(Status.VERIFIED, session_key=session.session_key)
    old_key = session.session_key

    services.verification_complete(verification=verification, session=session)

    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED
    assert verification.consumed_at is not None
    assert session.session_key != old_key
    assert session["marker"] == "kept"
    user.refresh_from_db()
    assert session_is_verified(session=session, user=user)


def test_the_session_key_is_stored_only_as_a_hash(user, phone, client):
    key = client_session_key(client)

    verification = services.verification_start(user=user, session_key=key, ip=None)

    stored = Verification.objects.filter(pk=verification.pk).values().get()
    assert key not in str(stored)


def test_entering_number_after_number_is_limited(user, settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "number_per_user": (2, 600),
    }
    services.number_accept(user=user, raw_number="+33 6 12 34 56 78")
    with pytest.raises(VerificationRefused):
        services.number_accept(user=user, raw_number="not a number")

    with pytest.raises(VerificationRefused) as refused:
        services.number_accept(user=user, raw_number="+49 151 12345678")

    _assert_limited(refused.value)


def test_a_shared_address_full_of_new_accounts_does_not_lock_out_a_verified_voter(
    user, make_user, settings
):
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, "start_per_ip": (2, 3600)}
    office = "192.0.2.44"
    for index in range(2):
        newcomer = make_user(f"new{index}")
        PhoneNumber.objects.create(user=newcomer, number=f"+4479113{index:05d}")
        _start(newcomer, f"k{index}", office)
    late = make_user("late")
    PhoneNumber.objects.create(user=late, number="+447911399999")
    with pytest.raises(VerificationRefused):
        _start(late, "k-late", office)

    PhoneNumber.objects.create(user=user, number=NUMBER, verified_at=timezone.now())
    assert _start(user, "k-voter", office).status == Status.QUEUED
